"""The review platforms and their registry: ``local``, ``encord``, ``labelstudio`` and ``simulated``.

Each platform is an adapter (see :class:`dataengine.review.base.ReviewPlatform`) in a module of its own.
The registry names each by ``module:Class`` and imports it only when asked for, so a platform's SDK (an
optional extra, as Encord's is) loads only where that platform is used, and no platform module imports
the registry back. ``simulated`` is a SIMULATION of a human reviewer from synthetic ground truth, for the
demo and tests only; it lives with the synthetic videos whose ground truth it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

from dataengine.errors import ConfigError

if TYPE_CHECKING:
    from dataengine.context import Context
    from dataengine.review.base import ReviewPlatform

#: Implemented platforms by name: where each one's class is.
PLATFORMS: dict[str, str] = {
    "local": "dataengine.review.platforms.local:LocalPlatform",
    "encord": "dataengine.review.platforms.encord:EncordPlatform",
    "labelstudio": "dataengine.review.platforms.labelstudio:LabelStudioPlatform",
    "simulated": "dataengine.synthetic.reviewer:SimulatedPlatform",
}


def get_platform(ctx: Context, name: str | None = None) -> ReviewPlatform:
    """The review platform ``name`` (default: ``ctx.settings.review_platform``) bound to ``ctx``."""
    chosen = name or ctx.settings.review_platform
    where = PLATFORMS.get(chosen)
    if where is None:
        raise ConfigError(
            f"unknown review platform {chosen!r}; known platforms are {sorted(PLATFORMS)} "
            "(set DATAENGINE_REVIEW_PLATFORM or pass --platform)"
        )
    module, _, attr = where.partition(":")
    platform_class = getattr(importlib.import_module(module), attr)
    return cast("ReviewPlatform", platform_class(ctx))


__all__ = ["PLATFORMS", "get_platform"]
