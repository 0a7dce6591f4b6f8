"""Human review of autolabels on an annotation platform: ``local``, ``encord`` or ``labelstudio``.

``export_for_review`` sends autolabelled clips out, ``import_reviews`` brings finished reviews back as
new annotation versions, ``review_report`` says where things stand. ``simulate_review`` is a SIMULATION
of a human reviewer from synthetic ground truth, for the demo and tests only.
"""

from dataengine.review.base import (
    PLATFORMS,
    CompletedReview,
    ExportItem,
    RetryableReviewError,
    ReviewPlatform,
    check_against_export,
    get_platform,
)
from dataengine.review.diff import BoxChanges, box_changes, frame_changes
from dataengine.review.exporting import ExportReport, export_for_review
from dataengine.review.importing import ImportReport, import_reviews
from dataengine.review.local import LocalPlatform
from dataengine.review.report import open_task_status, plot_edit_rate, report_summary, review_report
from dataengine.review.simulate import SIMULATED_REVIEWER, SimulationReport, simulate_review

__all__ = [
    "PLATFORMS",
    "SIMULATED_REVIEWER",
    "BoxChanges",
    "CompletedReview",
    "ExportItem",
    "ExportReport",
    "ImportReport",
    "LocalPlatform",
    "RetryableReviewError",
    "ReviewPlatform",
    "SimulationReport",
    "box_changes",
    "check_against_export",
    "export_for_review",
    "frame_changes",
    "get_platform",
    "import_reviews",
    "open_task_status",
    "plot_edit_rate",
    "report_summary",
    "review_report",
    "simulate_review",
]
