"""The manifest's columnar index is trusted while the manifest's fingerprint (size and modification time
or ETag) is the one it was written for, so start-up need not hash a manifest that grows with the data."""

from __future__ import annotations

import os

import pytest

from dataengine.storage import ObjectStore
from dataengine.training import columns
from dataengine.training.columns import index_manifest, manifest_fingerprint, read_manifest_columns
from dataengine.training.file_arrays import FileArray
from dataengine.training.manifest import ManifestEntry

SHA = "ab" * 32


def _manifest(n: int) -> bytes:
    lines = [
        ManifestEntry(
            f"{i:016x}-0000000", f"{i:016x}", 1, f"file:///x/{i}.json", SHA, "train", (0, 5), 64, 48, 2
        )
        for i in range(n)
    ]
    return "".join(e.to_json_line() + "\n" for e in lines).encode()


def test_index_is_used_without_hashing_while_the_fingerprint_holds(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_bytes("m.jsonl", _manifest(3))
    index_manifest(store, "m.jsonl", store.read_bytes("m.jsonl"))
    assert manifest_fingerprint(store, "m.jsonl") is not None

    def no_hashing(*_args: object) -> bytes:
        raise AssertionError("the manifest was hashed")

    monkeypatch.setattr(columns, "_stream_sha256", no_hashing)
    found = read_manifest_columns(store, "m.jsonl", write_index=False)
    assert len(found) == 3
    assert found.clip_ids[2] == f"{2:016x}-0000000"
    assert isinstance(found.frames, FileArray)  # read on demand, not loaded


def test_a_changed_manifest_is_hashed_and_parsed_again(store: ObjectStore) -> None:
    store.write_bytes("m.jsonl", _manifest(3))
    index_manifest(store, "m.jsonl", store.read_bytes("m.jsonl"))
    path = os.path.join(store.root, "m.jsonl")
    stat = os.stat(path)
    store.write_bytes("m.jsonl", _manifest(4))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert len(read_manifest_columns(store, "m.jsonl")) == 4
