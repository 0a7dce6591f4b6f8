"""ObjectStore on the local folder and memory backends."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dataengine.errors import ConfigError, ObjectExistsError, ObjectNotFoundError, StorageError
from dataengine.storage import ObjectStore


@pytest.fixture(params=["file", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return ObjectStore(f"file://{tmp_path / 'store'}")
    return ObjectStore(f"memory://test-{uuid.uuid4().hex}")


def test_roundtrip_bytes_text_json(any_store: ObjectStore) -> None:
    any_store.write_bytes("a/b/c.bin", b"\x00\x01")
    any_store.write_text("a/t.txt", "héllo")
    any_store.write_json("a/j.json", {"b": 1, "a": [1, 2]})
    assert any_store.read_bytes("a/b/c.bin") == b"\x00\x01"
    assert any_store.read_text("a/t.txt") == "héllo"
    assert any_store.read_json("a/j.json") == {"a": [1, 2], "b": 1}
    assert any_store.list("a") == ["a/b/c.bin", "a/j.json", "a/t.txt"]
    assert any_store.list("a", suffix=".json") == ["a/j.json"]
    assert any_store.list("missing") == []


def test_overwrite_replaces_content(any_store: ObjectStore) -> None:
    any_store.write_bytes("k", b"one")
    any_store.write_bytes("k", b"two")
    assert any_store.read_bytes("k") == b"two"


def test_exclusive_write_is_idempotent_and_refuses_other_content(any_store: ObjectStore) -> None:
    assert any_store.write_bytes("imm/v1.json", b"same", exclusive=True) is True
    assert any_store.write_bytes("imm/v1.json", b"same", exclusive=True) is False
    with pytest.raises(ObjectExistsError, match="immutable"):
        any_store.write_bytes("imm/v1.json", b"other", exclusive=True)
    assert any_store.read_bytes("imm/v1.json") == b"same"


def test_missing_key_raises_not_found_naming_the_uri(any_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"nope\.json"):
        any_store.read_bytes("nope.json")
    assert not any_store.exists("nope.json")


@pytest.mark.parametrize("key", ["", "../escape", "a/../b", "a//b", "./a"])
def test_invalid_keys_are_refused(any_store: ObjectStore, key: str) -> None:
    with pytest.raises(StorageError, match="invalid storage key"):
        any_store.write_bytes(key, b"x")


def test_uri_and_key_of_are_inverse(any_store: ObjectStore) -> None:
    uri = any_store.uri("clips/x/meta.json")
    assert uri.startswith(any_store.url + "/")
    assert any_store.key_of(uri) == "clips/x/meta.json"
    with pytest.raises(StorageError, match="not inside the store"):
        any_store.key_of("s3://elsewhere/x")


def test_put_get_file_and_local_path(any_store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload" * 1000)
    any_store.put_file(source, "files/src.bin")
    target = tmp_path / "dst.bin"
    any_store.get_file("files/src.bin", target)
    assert target.read_bytes() == source.read_bytes()
    with any_store.local_path("files/src.bin") as path:
        assert path.read_bytes() == source.read_bytes()


def test_delete_and_delete_prefix(any_store: ObjectStore) -> None:
    for name in ("p/1", "p/2", "q/1"):
        any_store.write_bytes(name, b"x")
    any_store.delete("p/1")
    any_store.delete("p/1")  # deleting a missing key is fine
    assert any_store.list() == ["p/2", "q/1"]
    assert any_store.delete_prefix("q") == 1
    assert any_store.list() == ["p/2"]


def test_relative_file_url_resolves_to_absolute(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    store = ObjectStore("file://./rel/store")
    assert store.url == f"file://{tmp_path / 'rel' / 'store'}"
    store.write_text("x.txt", "1")
    assert (tmp_path / "rel" / "store" / "x.txt").read_text() == "1"


def test_local_write_leaves_no_temporary_files(store: ObjectStore) -> None:
    for i in range(5):
        store.write_bytes("dir/k", str(i).encode())
        store.write_bytes(f"dir/e{i}", b"x", exclusive=True)
    names = sorted(p.name for p in Path(store.root, "dir").iterdir())
    assert names == ["e0", "e1", "e2", "e3", "e4", "k"]


def test_a_failed_local_write_keeps_the_old_object(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_bytes("k", b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="disk full"):
        store.write_bytes("k", b"new")
    monkeypatch.undo()
    assert store.read_bytes("k") == b"old"
    assert store.list() == ["k"]


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs a scheme"):
        ObjectStore("/just/a/path")
    with pytest.raises(ConfigError, match=r"'s3://' names no bucket or folder after s3://"):
        ObjectStore("s3://")
    with pytest.raises(ConfigError, match="cannot open storage nosuch://x: Protocol not known"):
        ObjectStore("nosuch://x")


def test_an_uncreatable_store_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StorageError, match=r"cannot create the store folder .*a-file/store: Not a directory"):
        ObjectStore(f"file://{tmp_path / 'a-file' / 'store'}")


def test_listing_and_info_give_sizes_and_skip_uploads_in_flight(any_store: ObjectStore) -> None:
    any_store.write_bytes("folder/a.bin", b"12345")
    any_store.write_bytes("folder/sub/b.bin", b"12")
    any_store.write_bytes("folder/.tmp-0123-c.bin", b"partial")
    listed = any_store.listing("folder")
    assert sorted(listed) == ["folder/a.bin", "folder/sub/b.bin"]
    assert (listed["folder/a.bin"]["size"], any_store.info("folder/sub/b.bin")["size"]) == (5, 2)
    assert any_store.listing("nothing/here") == {}
    with pytest.raises(ObjectNotFoundError, match=r"nope\.bin"):
        any_store.info("folder/nope.bin")


def test_local_files_and_keys_of_paths(any_store: ObjectStore, tmp_path: Path) -> None:
    any_store.write_bytes("x/y.bin", b"data")
    local = any_store.local_file("x/y.bin")
    if any_store.is_local:
        assert local is not None
        assert local.read_bytes() == b"data"
        assert any_store.key_of_path(local) == "x/y.bin"
        assert any_store.key_of_path(tmp_path / "elsewhere.bin") is None
    else:
        assert (local, any_store.key_of_path(tmp_path / "y.bin")) == (None, None)
    again = any_store.reopen()
    assert again is not any_store
    assert (again.url, again.read_bytes("x/y.bin")) == (any_store.url, b"data")
