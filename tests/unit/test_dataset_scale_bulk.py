"""The start-up benchmark's bulk generator writes what the engine's per-clip writer writes, byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

from benchmarks import dataset_scale as bench

from dataengine.formats import save_annotations
from dataengine.storage import ObjectStore
from dataengine.training.columns import index_manifest, read_manifest_columns
from dataengine.training.manifest import ManifestEntry

#: Two chunks (the second one partial) and 27 videos, two of them held out.
N_CLIPS = bench.CHUNK + 37


def test_templates_give_the_bytes_save_annotations_writes(tmp_path: Path) -> None:
    store = ObjectStore(f"file://{tmp_path}")
    typed = bench.clip_annotations(bench.CHUNK, 2 * bench.CHUNK)
    bulk = bench.annotation_bytes(bench.CHUNK, 2 * bench.CHUNK)

    for labels, data in zip(typed, bulk, strict=True):
        saved = save_annotations(store, labels)  # validates against the schema, then writes
        assert store.read_bytes(store.key_of(saved.uri)) == data


def test_the_bulk_manifest_and_index_equal_the_engines(tmp_path: Path) -> None:
    """Manifest lines as ``ManifestEntry`` writes them from each saved file, and the index a build writes."""
    bulk_root, engine_root = tmp_path / "bulk", tmp_path / "engine"
    bulk_root.mkdir()
    sizes = bench.generate(bulk_root, N_CLIPS, [])
    # The engine's path: every clip through save_annotations, its line from what that returned.
    engine = ObjectStore(f"file://{engine_root}")
    lines = []
    for start in range(0, N_CLIPS, bench.CHUNK):
        stop = min(start + bench.CHUNK, N_CLIPS)
        for c, labels in zip(range(start, stop), bench.clip_annotations(start, stop), strict=True):
            saved = save_annotations(engine, labels)
            uri = saved.uri.replace(engine.url, f"file://{bulk_root}")  # the same store, elsewhere
            frames = tuple(range(bench.FRAMES_PER_CLIP))
            entry = ManifestEntry(
                labels.clip_id, labels.clip_id[:16], 1, uri, saved.sha256, bench.split_of(c), frames,
                640, 360, saved.n_boxes,
            )  # fmt: skip
            lines.append(entry.to_json_line() + "\n")
    manifest = (bulk_root / "manifest.jsonl").read_bytes()
    assert manifest == "".join(lines).encode()
    assert sizes["n_boxes"] == sum(int(line.split('"n_boxes":')[1].split(",")[0]) for line in lines)
    assert {bench.split_of(c) for c in range(N_CLIPS)} == {"train", "val"}

    bulk_index = (bulk_root / "manifest.index.npz").read_bytes()
    store = ObjectStore(f"file://{bulk_root}")
    index_manifest(store, "manifest.jsonl", manifest)  # what `dataengine dataset build` writes
    assert (bulk_root / "manifest.index.npz").read_bytes() == bulk_index


def test_the_clips_read_first_are_written_by_the_engines_writer(tmp_path: Path) -> None:
    bench.generate(tmp_path, N_CLIPS, [])
    first = bench.first_train_samples(tmp_path, 40)
    last = N_CLIPS - 1  # in the partial last chunk
    bench.write_read_clips(tmp_path, {c for c, _ in first} | {last})
    store = ObjectStore(f"file://{tmp_path}")
    columns = read_manifest_columns(store, "manifest.jsonl")

    assert len(first) == 40
    assert all(bench.split_of(c) == "train" and 0 <= frame < bench.FRAMES_PER_CLIP for c, frame in first)
    for c in {c for c, _ in first} | {last}:
        data = (tmp_path / "annotations" / bench.clip_id(c) / "v0001.json").read_bytes()
        assert columns.clip_ids[c] == bench.clip_id(c)
        assert columns.sha256_hex(c) == hashlib.sha256(data).hexdigest()  # the manifest names these bytes
