"""Human review of autolabels on a platform: ``local``, ``encord``, ``labelstudio`` or ``simulated``.

``export_for_review`` sends autolabelled clips out, ``import_reviews`` brings finished reviews back as
new annotation versions, ``review_report`` says where things stand. The platforms are adapters in
:mod:`dataengine.review.platforms`; ``simulated`` is a SIMULATION of a human reviewer from synthetic
ground truth, for the demo and tests only.
"""

from dataengine.review.base import (
    CompletedReview,
    ExportItem,
    OpenTask,
    RetryableReviewError,
    ReviewPlatform,
    check_against_export,
)
from dataengine.review.diff import BoxChanges, box_changes, frame_changes
from dataengine.review.exporting import ExportReport, export_for_review
from dataengine.review.import_report import ImportReport
from dataengine.review.importing import import_reviews, open_tasks
from dataengine.review.platforms import PLATFORMS, get_platform
from dataengine.review.report import (
    ReviewQuality,
    ReviewReport,
    open_task_status,
    plot_edit_rate,
    report_summary,
    review_report,
)

__all__ = [
    "PLATFORMS",
    "BoxChanges",
    "CompletedReview",
    "ExportItem",
    "ExportReport",
    "ImportReport",
    "OpenTask",
    "RetryableReviewError",
    "ReviewPlatform",
    "ReviewQuality",
    "ReviewReport",
    "box_changes",
    "check_against_export",
    "export_for_review",
    "frame_changes",
    "get_platform",
    "import_reviews",
    "open_task_status",
    "open_tasks",
    "plot_edit_rate",
    "report_summary",
    "review_report",
]
