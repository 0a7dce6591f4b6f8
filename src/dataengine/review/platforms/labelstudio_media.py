"""How a reviewer's browser gets a clip's video from Label Studio, the way its users set it up.

- A ``file://`` store: Label Studio's local files serving (``LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LOCAL_FILES_DOCUMENT_ROOT``, which ``make up LABELSTUDIO=1`` sets to the store's folder). A task's
  video is ``/data/local-files/?d=<path below the document root>``, and the project gets a Local Storage
  connection over the store's ``clips/`` folder, without which Label Studio answers 404.
- An ``s3://`` store: an S3 source storage with presigned URLs. A task's video stays ``s3://bucket/key``;
  Label Studio resolves it to a presigned GET when the browser asks.

Storages are connected, never synced: the engine creates the tasks itself.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dataengine.errors import ReviewError

if TYPE_CHECKING:
    from dataengine.config import Settings
    from dataengine.storage import ObjectStore

STORAGE_TITLE = "dataengine clips"


class Caller(Protocol):
    """The REST client's one method."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request."""
        ...


def _folder(store: ObjectStore, key: str) -> Path:
    """Where ``key`` of a local store is on this machine."""
    path = store.local_file(key)
    assert path is not None, "only a local store has local files"
    return path.resolve()


def document_root(settings: Settings, store: ObjectStore) -> Path:
    """Label Studio's document root for a file store: the setting, else the store's own folder."""
    if settings.labelstudio_document_root:
        return Path(settings.labelstudio_document_root).resolve()
    return _folder(store, "clips").parent


def video_url(settings: Settings, store: ObjectStore, key: str) -> str:
    """The URL a task names its video by: local files serving for a file store, ``s3://`` for S3."""
    if not store.is_local:
        return store.uri(key)
    path = _folder(store, key)
    root = document_root(settings, store)
    if not path.is_relative_to(root):
        raise ReviewError(
            f"Label Studio: the store {store.url} is not below the document root {root}; set "
            "DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT to Label Studio's LOCAL_FILES_DOCUMENT_ROOT"
        )
    return "/data/local-files/?d=" + urllib.parse.quote(path.relative_to(root).as_posix())


def connect_storage(client: Caller, project: int, settings: Settings, store: ObjectStore) -> None:
    """The project's source storage over the store's clips (created once; never synced)."""
    if store.is_local:
        kind, body = "localfiles", _local_storage(project, store)
    elif store.url.startswith("s3://"):
        kind, body = "s3", _s3_storage(project, settings, store)
    else:
        return  # memory:// (tests): nothing a browser could reach
    existing = client.call("GET", f"/api/storages/{kind}/?project={project}") or []
    if any(storage.get("title") == STORAGE_TITLE for storage in existing):
        return
    try:
        client.call("POST", f"/api/storages/{kind}/", body)
    except ReviewError as exc:
        hint = (
            "start Label Studio with LOCAL_FILES_SERVING_ENABLED=true and LOCAL_FILES_DOCUMENT_ROOT at or "
            "above the store's folder (make up LABELSTUDIO=1 does)"
            if kind == "localfiles"
            else "check the bucket, the credentials in DATAENGINE_STORAGE_OPTIONS and the endpoint"
        )
        raise ReviewError(f"Label Studio refused the {kind} storage for the clips: {exc}; {hint}") from exc


def _local_storage(project: int, store: ObjectStore) -> dict[str, Any]:
    clips = _folder(store, "clips")
    clips.mkdir(parents=True, exist_ok=True)
    return {"project": project, "title": STORAGE_TITLE, "path": str(clips), "use_blob_urls": True,
            "regex_filter": r".*\.mp4$", "recursive_scan": True}  # fmt: skip


def _s3_storage(project: int, settings: Settings, store: ObjectStore) -> dict[str, Any]:
    bucket, _, prefix = store.url.removeprefix("s3://").partition("/")
    options = settings.storage_options
    client_kwargs = options.get("client_kwargs") or {}
    body: dict[str, Any] = {
        "project": project, "title": STORAGE_TITLE, "bucket": bucket,
        "prefix": f"{prefix}/clips" if prefix else "clips", "use_blob_urls": True, "presign": True,
        "presign_ttl": settings.labelstudio_presign_minutes, "regex_filter": r".*\.mp4$",
        "recursive_scan": True, "region_name": client_kwargs.get("region_name") or options.get("region_name"),
    }  # fmt: skip
    if options.get("key") and options.get("secret"):
        body.update(aws_access_key_id=options["key"], aws_secret_access_key=options["secret"])
    endpoint = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
    if endpoint:
        body["s3_endpoint"] = endpoint
    return body
