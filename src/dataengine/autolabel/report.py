"""What an autolabel run did, for the CLI, XCom and the logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class AutolabelReport:
    """What an autolabel run did: the clips labelled, the version written for each, and the clips left."""

    clips: list[str]
    versions: dict[str, int]
    n_boxes: int
    skipped: list[str]
    model_id: str
    #: Why each skipped clip was skipped.
    skip_reasons: dict[str, str] = field(default_factory=dict)
    #: Clips whose frames could not be read, with the reason; they are in stage ``quarantined``.
    quarantined: dict[str, str] = field(default_factory=dict)
    n_tracks: int = 0
    #: The ensemble's model ids (``model_id`` joins them with ``+``).
    model_ids: list[str] = field(default_factory=list)
    #: Clips whose detections came from the per-clip detection cache instead of a model pass.
    from_cache: list[str] = field(default_factory=list)
    #: Configured models left out of the ensemble, with the reason (far below the best on validation).
    dropped_models: dict[str, str] = field(default_factory=dict)
    #: Where the members' weights came from (validation AP per class, fixed weights, or why equal).
    weights_basis: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for ``--json`` output and XCom)."""
        return asdict(self)

    def summary(self) -> str:
        """A short human summary."""
        lines = [
            f"autolabelled {len(self.clips)} clip(s) with model {self.model_id}: "
            f"{self.n_boxes} box(es) in {self.n_tracks} track(s); skipped {len(self.skipped)}"
        ]
        lines += [
            f"left model {model_id} out of the ensemble: {why}"
            for model_id, why in self.dropped_models.items()
        ]
        lines += [f"skipped {clip_id}: {self.skip_reasons.get(clip_id, '')}" for clip_id in self.skipped]
        lines += [f"quarantined {clip_id}: {why}" for clip_id, why in self.quarantined.items()]
        return "\n".join(lines)
