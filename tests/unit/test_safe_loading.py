"""Files from the bucket never run code: checkpoints load with ``weights_only=True``, arrays without pickle.

Whoever can write the bucket must not be able to run code on the workers that read it.
"""

from __future__ import annotations

import ast
import io
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from dataengine.errors import ModelError
from dataengine.storage import ObjectStore
from dataengine.training.resume import RESUME_FORMAT, Trainables, load_state, resume_key
from dataengine.triggers.anomaly import load_anomaly_model
from dataengine.vision.checkpoints import load_checkpoint
from dataengine.vision.layout import CHECKPOINT_FORMAT, checkpoint_key

_ROOT = Path(__file__).parents[2]


class _RunsCode:
    """Pickled, this object makes whoever unpickles it create a folder: a stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker),))


def _hostile(marker: Path, **fields: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save({**fields, "payload": _RunsCode(marker)}, buffer)
    return buffer.getvalue()


def test_a_hostile_training_state_is_refused_without_running_it(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path / 'store'}")
    marker = tmp_path / "ran"
    config = {"arch": "tiny"}
    store.write_bytes(resume_key("m-1"), _hostile(marker, format=RESUME_FORMAT, config=config))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    with pytest.raises(ModelError, match="unreadable training state"):
        load_state(store, "m-1", config=config, parts=Trainables(model, optimizer, scheduler))
    assert not marker.exists()


def test_a_hostile_model_or_anomaly_checkpoint_is_refused_without_running_it(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path / 'store'}")
    marker = tmp_path / "ran"
    store.write_bytes(checkpoint_key("m-2"), _hostile(marker, config={"format": CHECKPOINT_FORMAT}))
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(store, "m-2")
    store.write_bytes("models/anomaly-1/model.pt", _hostile(marker, config={}))
    with pytest.raises(ModelError, match="not a usable anomaly autoencoder"):
        load_anomaly_model(store, "anomaly-1")
    assert not marker.exists()


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for folder in ("src", "benchmarks", "dags", "plugins"):
        for path in sorted((_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                    found.append((path, node))
    return found


def _keyword(call: ast.Call, name: str) -> str | None:
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == name), None)


def test_every_torch_load_is_weights_only_and_every_np_load_refuses_pickles() -> None:
    loads = _calls("torch.load")
    assert loads, "the scan found no torch.load at all"
    unsafe = [f"{p.relative_to(_ROOT)}:{c.lineno}" for p, c in loads if _keyword(c, "weights_only") != "True"]
    assert unsafe == []
    pickles = [
        f"{p.relative_to(_ROOT)}:{c.lineno}"
        for p, c in _calls("np.load")
        if _keyword(c, "allow_pickle") != "False"
    ]
    assert pickles == []
