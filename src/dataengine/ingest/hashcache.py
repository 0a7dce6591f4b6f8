"""Remembering the sha256 of landing files, so that discovery reads each file's bytes only once.

A file is known by its key and a fingerprint from the store's listing: size plus ETag (S3) or
modification time (local disk). The cache lives in the store, one small JSON document per landing
folder (``ingest/source-hashes/{folder-hash}.json``); losing it only costs re-hashing. A changed
fingerprint (the file was replaced) means the file is hashed again.
"""

from __future__ import annotations

import hashlib
import logging

from dataengine.errors import StorageError
from dataengine.storage import ObjectStore, fingerprint

CACHE_PREFIX = "ingest/source-hashes"
SCHEMA = "dataengine.source-hashes/1"
log = logging.getLogger(__name__)


def listing(store: ObjectStore, prefix: str) -> dict[str, str | None]:
    """Every file key under ``prefix`` with its fingerprint, from one listing of the store."""
    return {key: fingerprint(info) for key, info in store.listing(prefix).items()}


def key_fingerprint(store: ObjectStore, key: str) -> str | None:
    """The fingerprint of one key; None when the store cannot say."""
    return store.fingerprint(key)  # None only means hashing the file


class HashCache:
    """Known ``key -> (fingerprint, sha256)``, loaded per folder on first use; :meth:`save` writes back."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._shards: dict[str, dict[str, dict[str, str]]] = {}
        self._dirty: dict[str, set[str]] = {}  # shard name -> keys put since the last save

    @staticmethod
    def shard_key(key: str) -> str:
        folder = key.rsplit("/", 1)[0] if "/" in key else ""
        return f"{CACHE_PREFIX}/{hashlib.sha1(folder.encode()).hexdigest()[:16]}.json"

    def _shard(self, key: str) -> dict[str, dict[str, str]]:
        name = self.shard_key(key)
        if name not in self._shards:
            self._shards[name] = self._load(name)
        return self._shards[name]

    def _load(self, name: str) -> dict[str, dict[str, str]]:
        try:
            if not self.store.exists(name):
                return {}
            doc = self.store.read_json(name)
        except StorageError as exc:
            log.warning("ignoring the unreadable hash cache %s: %s", self.store.uri(name), exc)
            return {}
        entries = doc.get("entries") if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None
        return dict(entries) if isinstance(entries, dict) else {}

    def get(self, key: str, version: str | None) -> str | None:
        """The cached sha256 of ``key`` if its fingerprint is still ``version``."""
        if version is None:
            return None
        entry = self._shard(key).get(key)
        if isinstance(entry, dict) and entry.get("fingerprint") == version:
            return entry.get("sha256")
        return None

    def put(self, key: str, version: str | None, sha256: str) -> None:
        """Remember the sha256 of ``key`` at fingerprint ``version``."""
        if version is None:
            return
        self._shard(key)[key] = {"fingerprint": version, "sha256": sha256}
        self._dirty.setdefault(self.shard_key(key), set()).add(key)

    def save(self) -> None:
        """Write the folders that changed (each atomically), merged into what the store holds now."""
        for name in sorted(self._dirty):
            # Mapped ingest tasks share a folder's shard: re-read it so that a concurrent task's
            # entries survive (a lost entry would only cost a re-hash, but need not be lost).
            entries = self._load(name)
            entries.update({key: self._shards[name][key] for key in self._dirty[name]})
            self._shards[name] = entries
            self.store.write_json(name, {"schema": SCHEMA, "entries": entries})
        self._dirty.clear()
