"""`dataengine model import`: a team's own detector, checked, stored, registered as imported, promoted."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.context import Context
from dataengine.errors import ModelError
from dataengine.lineage.model_registry import set_model_status
from dataengine.storage import ObjectStore
from dataengine.training.transfer import transfer_weights
from dataengine.vision import build_detector, load_any_detector, load_checkpoint
from dataengine.vision.mmdet_backend import mmdet_available
from dataengine.vision.torchvision_import import hub_cache_file, named_weights_url
from model_files import tiny_grounding_dino_folder, tiny_owlv2_folder, torchvision_state_dict

runner = CliRunner()
COCO_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'lineage.db'}")
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path


def call(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def _models(engine: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = call("model", "list", "--json")
    return rows


def _stored_models(engine: Path) -> list[Path]:
    folder = engine / "store" / "models"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_coco_checkpoint_with_a_class_map_is_imported_promoted_and_detects_our_classes(
    engine: Path,
) -> None:
    weights = torchvision_state_dict(engine / "coco.pth", arch=COCO_ARCH, num_classes=90)
    out = call("model", "import", str(weights), "--arch", COCO_ARCH, "--class-map", "1=person,bed=bed")
    model_id = out.strip().splitlines()[-1]
    assert model_id.startswith("m-")
    assert "no held-out set on day one" in out
    [row] = _models(engine)
    assert (row["id"], row["status"], row["origin"]) == (model_id, "promoted", "imported")
    assert row["source_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert row["source_uri"] == f"file://{weights.resolve()}"

    store = ObjectStore(f"file://{engine / 'store'}")
    config, _ = load_checkpoint(store, model_id)
    # COCO's label 1 is "person" and 65 is "bed": the name and the id reach the same kind of entry.
    assert config["label_map"] == {"0": "person", "64": "bed"}
    assert (config["min_size"], config["max_size"]) == (320, 640)
    detector = load_any_detector(store, model_id, device="cpu")
    assert detector.classes == ["person", "bed", "wheelchair"]
    found = detector.predict_batch([np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)])
    assert set(found[0].labels.tolist()) <= {0, 1}  # wheelchair is mapped from nothing

    again = call("model", "import", str(weights), "--arch", COCO_ARCH, "--class-map", "1=person,bed=bed")
    assert again.strip().splitlines()[-1] == model_id
    assert "already imported" in again
    assert len(_models(engine)) == 1


def test_a_second_import_stays_a_candidate_while_another_model_is_promoted(engine: Path) -> None:
    first = torchvision_state_dict(engine / "a.pth", arch="tiny_fasterrcnn", num_classes=3, seed=1)
    second = torchvision_state_dict(engine / "b.pth", arch="tiny_fasterrcnn", num_classes=3, seed=2)
    promoted = call("model", "import", str(first), "--arch", "tiny_fasterrcnn").strip().splitlines()[-1]
    report = call("model", "import", str(second), "--arch", "tiny_fasterrcnn", "--json")
    assert report["status"] == "candidate"
    assert f"{promoted} is promoted and there is no dataset yet" in report["decision"]
    statuses = {row["id"]: row["status"] for row in _models(engine)}
    assert statuses == {promoted: "promoted", report["model_id"]: "candidate"}
    assert (
        call("model", "import", str(second), "--arch", "tiny_fasterrcnn", "--no-promote", "--json")[
            "decision"
        ]
        == "not promoted (--no-promote)"
    )


@pytest.mark.parametrize(
    ("make", "args", "problem"),
    [
        ("list", ["--arch", "tiny_fasterrcnn"], "is not a state dict"),
        ("text", ["--arch", "tiny_fasterrcnn"], "is not a PyTorch weights file"),
        ("tiny", ["--arch", COCO_ARCH, "--class-map", "1=person"], f"does not hold {COCO_ARCH} weights"),
        ("coco", ["--arch", "tiny_fasterrcnn", "--class-map", "1=forklift"], "class 'forklift'"),
        ("coco", ["--arch", "tiny_fasterrcnn", "--class-map", "200=person"], "label id 200"),
        ("coco", ["--arch", "tiny_fasterrcnn", "--class-map", "1:person"], "is not SOURCE=CLASS"),
        ("coco", ["--arch", "tiny_fasterrcnn"], "detect 90 classes, ours are 3"),
        ("coco", ["--arch", "tiny_fasterrcnn", "--class-map", "giraffe=person"], "label 'giraffe'"),
    ],
)
def test_bad_weights_and_class_maps_are_refused_naming_the_file_and_nothing_is_registered(
    engine: Path, make: str, args: list[str], problem: str
) -> None:
    path = engine / f"{make}.pth"
    if make == "list":
        torch.save([torch.zeros(3)], path)
    elif make == "text":
        path.write_text("not weights at all")
    else:
        torchvision_state_dict(path, arch="tiny_fasterrcnn", num_classes=90 if make == "coco" else 3)
    result = runner.invoke(app, ["model", "import", str(path), *args])
    assert result.exit_code == 1
    assert problem in result.output
    assert "Traceback" not in result.output
    if "SOURCE=CLASS" not in problem:
        assert str(path) in result.output
    assert _models(engine) == []
    assert _stored_models(engine) == []


def test_an_mmdet_config_without_a_checkpoint_is_refused(engine: Path) -> None:
    config = engine / "retinanet.py"
    config.write_text("model = dict(type='RetinaNet')\n")
    result = runner.invoke(app, ["model", "import", "--arch", "mmdet", "--config", str(config)])
    assert result.exit_code == 1
    assert f"--config {config}: no checkpoint given" in result.output
    assert _models(engine) == []
    assert _stored_models(engine) == []


@pytest.mark.skipif(mmdet_available(), reason="tests the refusal on a machine without mmcv's ops")
def test_an_mmdet_model_without_mmcv_is_refused_naming_the_fix_and_nothing_is_registered(
    engine: Path,
) -> None:
    config = engine / "retinanet.py"
    config.write_text("model = dict(type='RetinaNet')\n")
    checkpoint = torchvision_state_dict(engine / "retinanet.pth", arch="tiny_fasterrcnn", num_classes=3)
    result = runner.invoke(
        app, ["model", "import", str(checkpoint), "--arch", "mmdet", "--config", str(config)]
    )
    assert result.exit_code == 1
    assert f"cannot import {checkpoint}: the mmdet backend needs mmdetection" in result.output
    assert "make mmdet" in result.output
    assert _models(engine) == []
    assert _stored_models(engine) == []


@pytest.mark.skipif(mmdet_available(), reason="tests the refusal on a machine without mmcv's ops")
def test_a_stored_mmdet_model_is_refused_where_mmcv_is_missing_naming_the_model(engine: Path) -> None:
    """Imported on a machine with mmcv, promoted, then evaluated or used where it is missing: an error."""
    from dataengine.vision.layout import CHECKPOINT_FORMAT, checkpoint_key

    store = ObjectStore(f"file://{engine / 'store'}")
    config = {"format": CHECKPOINT_FORMAT, "backend": "mmdet", "model_id": "m-mmdet", "arch": "mmdet",
              "classes": ["person"], "mmdet_config": "model = dict(type='RetinaNet')\n"}  # fmt: skip
    buffer = io.BytesIO()
    torch.save({"config": config, "state_dict": {}}, buffer)
    store.write_bytes(checkpoint_key("m-mmdet"), buffer.getvalue())
    with pytest.raises(ModelError, match="model m-mmdet is an mmdet model, and this machine cannot run it"):
        load_any_detector(store, "m-mmdet", device="cpu")


def test_named_default_weights_fail_fast_naming_the_offline_cache_then_load_from_it(engine: Path) -> None:
    result = runner.invoke(app, ["model", "import", "--arch", COCO_ARCH, "--weights", "DEFAULT",
                                 "--class-map", "person=person"])  # fmt: skip
    cached = hub_cache_file(named_weights_url(COCO_ARCH, "DEFAULT"))
    assert result.exit_code == 1
    assert f"not in the offline cache {cached}" in result.output
    assert str(engine / "torch-home") in str(cached)
    assert _models(engine) == []
    # Filled as the message says (here with random weights of the same layout), the cache is used.
    cached.parent.mkdir(parents=True)
    torchvision_state_dict(cached, arch=COCO_ARCH, num_classes=90)
    out = call("model", "import", "--arch", COCO_ARCH, "--weights", "DEFAULT", "--class-map", "person=person")
    [row] = _models(engine)
    assert row["source_uri"] == f"file://{cached}"
    assert row["id"] == out.strip().splitlines()[-1]


@pytest.mark.parametrize("arch", ["owlv2", "grounding_dino"])
def test_an_open_vocabulary_folder_is_imported_with_our_class_names_as_prompts(
    engine: Path, arch: str
) -> None:
    folder = engine / arch
    folder.mkdir()
    (tiny_owlv2_folder if arch == "owlv2" else tiny_grounding_dino_folder)(folder)
    report = call("model", "import", str(folder), "--arch", arch, "--class-map",
                  "a person=person,a wheelchair=wheelchair", "--json")  # fmt: skip
    assert report["class_map"] == {"a person": "person", "a wheelchair": "wheelchair"}
    assert report["status"] == "promoted"
    store = ObjectStore(f"file://{engine / 'store'}")
    detector = load_any_detector(store, report["model_id"], device="cpu")
    frame = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    [found] = detector.predict_batch([frame])
    assert len(found) > 0
    assert set(found.labels.tolist()) <= {0, 2}
    assert (found.boxes_xyxy[:, 2] <= 120).all()
    assert (found.boxes_xyxy[:, 3] <= 90).all()
    # The model's own files are kept in the store, so the folder may go away.
    assert (engine / "store" / "models" / report["model_id"] / "files" / "config.json").is_file()


def test_an_open_vocabulary_import_of_a_file_or_of_the_wrong_kind_is_refused(engine: Path) -> None:
    folder = engine / "owl"
    folder.mkdir()
    tiny_owlv2_folder(folder)
    result = runner.invoke(app, ["model", "import", str(folder), "--arch", "grounding_dino"])
    assert result.exit_code == 1
    assert "not grounding_dino" in result.output
    result = runner.invoke(app, ["model", "import", str(folder / "config.json"), "--arch", "owlv2"])
    assert result.exit_code == 1
    assert "is a folder written by save_pretrained, not a file" in result.output
    assert _models(engine) == []


def test_warm_start_from_an_imported_coco_model_takes_the_mapped_class_rows(tmp_path: Path) -> None:
    weights = torchvision_state_dict(tmp_path / "coco.pth", arch="tiny_fasterrcnn", num_classes=90)
    source = torch.load(weights, weights_only=True)
    config = {
        "arch": "tiny_fasterrcnn", "classes": ["person", "bed", "wheelchair"],
        "source_classes": [f"label {i + 1}" for i in range(90)], "label_map": {"0": "person", "64": "bed"},
    }  # fmt: skip
    torch.manual_seed(5)
    model = build_detector("tiny_fasterrcnn", num_classes=3, min_size=192, max_size=256)
    fresh = model.state_dict()["roi_heads.box_predictor.cls_score.weight"].clone()
    report = transfer_weights(model, config, source)
    state = model.state_dict()
    cls = state["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(cls[0], source["roi_heads.box_predictor.cls_score.weight"][0])
    assert torch.equal(cls[1], source["roi_heads.box_predictor.cls_score.weight"][1])  # person
    assert torch.equal(cls[2], source["roi_heads.box_predictor.cls_score.weight"][65])  # bed
    assert torch.equal(cls[3], fresh[3])  # wheelchair: nobody's
    box = state["roi_heads.box_predictor.bbox_pred.weight"]
    assert torch.equal(box[8:12], source["roi_heads.box_predictor.bbox_pred.weight"][260:264])
    assert torch.equal(state["backbone.body.0.0.weight"], source["backbone.body.0.0.weight"])
    assert report.classes_from_source == {"person": "label 1", "bed": "label 65"}
    assert report.skipped == []


def test_the_ensemble_follows_promotion_through_the_promoted_alias(ctx: Context, tmp_path: Path) -> None:
    from dataengine.autolabel.run import _model_ids
    from dataengine.training.model_import import ModelImportRequest, import_model

    assert ctx.settings.autolabel_models == ["promoted"]
    first = torchvision_state_dict(tmp_path / "a.pth", arch="tiny_fasterrcnn", num_classes=3, seed=1)
    second = torchvision_state_dict(tmp_path / "b.pth", arch="tiny_fasterrcnn", num_classes=3, seed=2)
    a = import_model(ctx, ModelImportRequest(arch="tiny_fasterrcnn", weights=str(first))).model_id
    b = import_model(ctx, ModelImportRequest(arch="tiny_fasterrcnn", weights=str(second))).model_id
    assert _model_ids(ctx) == ([a], [1.0])
    with ctx.db.session() as session:
        set_model_status(session, b, "promoted")
    assert _model_ids(ctx) == ([b], [1.0])
    ensemble = ctx.settings.model_copy(
        update={"autolabel_models": ["promoted", a, b], "autolabel_model_weights": [2.0, 1.0, 3.0]}
    )
    assert _model_ids(Context(ensemble, ctx.store, ctx.db)) == ([b, a], [2.0, 1.0])


def test_weights_and_a_transformers_folder_are_imported_from_an_s3_store(
    s3_store: ObjectStore, s3_server: dict[str, Any], tmp_path: Path
) -> None:
    from dataengine.config import Settings
    from dataengine.training.model_import import ModelImportRequest, import_model

    options = {k: v for k, v in s3_server.items() if k != "endpoint_url"}
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'lineage.db'}", storage_url=s3_store.url,
        storage_options=options, classes=["person", "bed", "wheelchair"],
    )  # fmt: skip
    weights = torchvision_state_dict(tmp_path / "team.pth", arch="tiny_fasterrcnn", num_classes=3)
    s3_store.put_file(weights, "incoming/team.pth")
    folder = tiny_owlv2_folder(tmp_path / "owlv2")
    for path in folder.iterdir():
        s3_store.put_file(path, f"incoming/owlv2/{path.name}")
    ctx = Context.create(settings, run_id="test/import-s3")
    try:
        team = import_model(
            ctx, ModelImportRequest(arch="tiny_fasterrcnn", weights=s3_store.uri("incoming/team.pth"))
        )
        owl = import_model(
            ctx, ModelImportRequest(arch="owlv2", weights=s3_store.uri("incoming/owlv2"), promote=False)
        )
        assert (team.source_uri, team.status) == (s3_store.uri("incoming/team.pth"), "promoted")
        assert team.source_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
        # A folder's sha256 is that of its files' sorted "name sha256" lines, wherever it was read from.
        from dataengine.training.model_import import source_sha256

        assert (owl.source_uri, owl.source_sha256) == (s3_store.uri("incoming/owlv2"), source_sha256(folder))
        detector = load_any_detector(ctx.store, owl.model_id, device="cpu")
        [found] = detector.predict_batch([np.zeros((48, 64, 3), dtype=np.uint8)])
        assert set(found.labels.tolist()) <= {0, 1, 2}
        assert detector.classes == ["person", "bed", "wheelchair"]
        missing = ModelImportRequest(arch="tiny_fasterrcnn", weights=s3_store.uri("incoming/nothing.pth"))
        with pytest.raises(ModelError, match="no such file or folder, locally or in the store"):
            import_model(ctx, missing)
    finally:
        ctx.close()


def test_the_owlv2_fetch_and_import_commands_of_docs_models_run_as_written(engine: Path) -> None:
    """docs/models.md's commands, in bash, with the hub's model name replaced by a local folder (no
    internet here): the fetch command saves a folder that the import command takes as it is."""
    import os
    import re
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    block = re.search(r"# on a machine with internet.*?\n(.*?)```", text, flags=re.S)
    assert block, "docs/models.md shows how to fetch OWLv2"
    script = block.group(1).replace("\\\n", " ")
    hub_name = "google/owlv2-base-patch16-ensemble"
    assert hub_name in script
    script = script.replace(hub_name, str(tiny_owlv2_folder(engine / "hub-copy")))
    workdir = engine / "work"
    workdir.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (workdir / "owlv2" / "config.json").is_file()
    model_id = done.stdout.strip().splitlines()[-1]
    [row] = _models(engine)
    assert (row["id"], row["status"], row["source_uri"]) == (
        model_id,
        "promoted",
        f"file://{workdir / 'owlv2'}",
    )
    config, _ = load_checkpoint(ObjectStore(f"file://{engine / 'store'}"), model_id)
    assert config["source_classes"] == ["a person", "a hospital bed", "a person in a wheelchair"]
