"""ObjectStore against a real S3 server: moto's standalone server on 127.0.0.1, through s3fs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dataengine.errors import ObjectExistsError, ObjectNotFoundError
from dataengine.storage import ObjectStore

pytestmark = pytest.mark.s3


def test_s3_roundtrip_and_listing(s3_store: ObjectStore) -> None:
    s3_store.write_json("clips/a/meta.json", {"x": 1})
    s3_store.write_bytes("clips/a/frames/000000.jpg", b"jpg")
    s3_store.write_bytes("clips/b/frames/000002.jpg", b"jpg2")
    assert s3_store.read_json("clips/a/meta.json") == {"x": 1}
    assert s3_store.list("clips") == [
        "clips/a/frames/000000.jpg",
        "clips/a/meta.json",
        "clips/b/frames/000002.jpg",
    ]
    assert s3_store.list("clips/b") == ["clips/b/frames/000002.jpg"]
    assert s3_store.uri("clips/a/meta.json").startswith("s3://")


def test_s3_exclusive_writes(s3_store: ObjectStore) -> None:
    assert s3_store.write_bytes("annotations/c/v0001.json", b"v1", exclusive=True)
    assert not s3_store.write_bytes("annotations/c/v0001.json", b"v1", exclusive=True)
    with pytest.raises(ObjectExistsError):
        s3_store.write_bytes("annotations/c/v0001.json", b"changed", exclusive=True)
    assert s3_store.read_bytes("annotations/c/v0001.json") == b"v1"


def test_s3_files_and_missing_keys(s3_store: ObjectStore, tmp_path: Path) -> None:
    local = tmp_path / "clip.mp4"
    local.write_bytes(b"\x00" * 300_000)
    s3_store.put_file(local, "clips/a/clip.mp4")
    with s3_store.local_path("clips/a/clip.mp4") as path:
        assert path.stat().st_size == 300_000
    with pytest.raises(ObjectNotFoundError, match="clips/zzz"):
        s3_store.read_bytes("clips/zzz/meta.json")
    s3_store.delete("clips/a/clip.mp4")
    assert not s3_store.exists("clips/a/clip.mp4")


def test_s3_listing_sees_writes_of_another_client(
    s3_store: ObjectStore, s3_server: dict[str, object]
) -> None:
    other = ObjectStore(s3_store.url, **{k: v for k, v in s3_server.items() if k != "endpoint_url"})
    assert s3_store.list("x") == []
    other.write_bytes("x/new", b"1")
    assert s3_store.list("x") == ["x/new"]


def test_s3_exclusive_write_is_one_conditional_put(
    s3_store: ObjectStore, s3_server: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer creates the key after any check we could make: S3 itself refuses our PUT."""
    other = ObjectStore(s3_store.url, **{k: v for k, v in s3_server.items() if k != "endpoint_url"})
    other.write_bytes("annotations/c/v0002.json", b"theirs")
    monkeypatch.setattr(ObjectStore, "exists", lambda self, key: False)  # the check that came too early
    with pytest.raises(ObjectExistsError, match=r"v0002\.json already exists with other content"):
        s3_store.write_bytes("annotations/c/v0002.json", b"ours", exclusive=True)
    assert other.read_bytes("annotations/c/v0002.json") == b"theirs"


def test_s3_racing_exclusive_writers_have_one_winner(s3_store: ObjectStore) -> None:
    def write(n: int) -> str:
        try:
            return (
                "won"
                if s3_store.write_bytes("datasets/d/v0001/manifest.jsonl", b"%d" % n, exclusive=True)
                else "same"
            )
        except ObjectExistsError:
            return "lost"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(write, range(8)))
    assert outcomes.count("won") == 1, outcomes
    assert outcomes.count("lost") == 7
    winner = outcomes.index("won")
    assert s3_store.read_bytes("datasets/d/v0001/manifest.jsonl") == b"%d" % winner
