"""The ``encord`` review platform, through the official ``encord`` SDK (``pip install dataengine[encord]``).

A clip is one video on Encord titled ``{clip_id}.mp4``; its data hash is the task's external id. Export
registers the videos (from our object storage through a cloud integration, or uploaded), links them into
the project's dataset and saves the pre-labels in bundles. A review is finished when its label row has
reached the workflow's final stage. Credentials: ``DATAENGINE_ENCORD_SSH_KEY`` (the key itself, set by
the Airflow operators from the ``encord_default`` Connection), ``DATAENGINE_ENCORD_SSH_KEY_FILE``, or the
SDK's own ``ENCORD_SSH_KEY`` / ``ENCORD_SSH_KEY_FILE``. The key is never logged.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encord import exceptions as enc_errors
from encord.objects import LabelRowV2
from encord.orm.dataset import DataLinkDuplicatesBehavior
from encord.orm.storage import DataUploadItems, DataUploadVideo
from encord.workflow.stages.final import FinalStage

from dataengine.clips import read_meta, video_key
from dataengine.errors import DataEngineError, FormatError, ReviewError
from dataengine.formats import ClipAnnotations
from dataengine.review.base import (
    CompletedReview,
    ExportItem,
    ExportOutcome,
    ExportRow,
    OpenTask,
    RetryableReviewError,
    TaskStatus,
)
from dataengine.review.platforms import encord_labels as labels
from dataengine.review.retrying import with_retries

if TYPE_CHECKING:
    from encord.project import Project
    from encord.user_client import EncordUserClient

    from dataengine.context import Context

log = logging.getLogger(__name__)

PLATFORM = "encord"
#: Label rows per bundled request; the SDK allows 1000, its docs advise ~20 for label-heavy videos.
BUNDLE_SIZE = 20
#: Seconds to wait for Encord to register cloud videos.
REGISTER_TIMEOUT = 600

# Rate limits, connection failures and server errors pass; the Airflow task is retried.
_TRANSIENT = (
    enc_errors.RateLimitExceededError,
    enc_errors.RequestException,
    enc_errors.UnknownException,
    enc_errors.PayloadTooLargeError,
)


@contextmanager
def encord_errors(what: str) -> Iterator[None]:
    """Encord's exceptions as ours: transient ones retryable, the rest a plain :class:`ReviewError`."""
    try:
        yield
    except _TRANSIENT as exc:
        raise RetryableReviewError(f"Encord, {what}: {type(exc).__name__}: {exc}") from exc
    except enc_errors.EncordException as exc:
        raise ReviewError(f"Encord, {what}: {type(exc).__name__}: {exc}") from exc


def connect(settings: Any) -> EncordUserClient:
    """An SDK client from the settings' key (or the SDK's own environment variables)."""
    from encord.user_client import EncordUserClient

    key = settings.encord_ssh_key.get_secret_value() if settings.encord_ssh_key else None
    with encord_errors("signing in"):
        try:
            return EncordUserClient.create_with_ssh_private_key(
                ssh_private_key=key,
                ssh_private_key_path=None if key else settings.encord_ssh_key_file,
                domain=settings.encord_domain,
                user_agent_suffix="dataengine",
            )
        except ValueError as exc:  # a key of the wrong type; the message names no key material
            raise ReviewError(f"Encord: the SSH key is not an Ed25519 OpenSSH private key ({exc})") from exc


class EncordPlatform:
    """Review on an Encord workflow project named by ``DATAENGINE_ENCORD_PROJECT_HASH``."""

    name = PLATFORM

    def __init__(self, ctx: Context, client_factory: Callable[[], EncordUserClient] | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self._client_factory = client_factory or (lambda: connect(self.settings))
        self._client: EncordUserClient | None = None
        self._project: Project | None = None

    # -- connection -------------------------------------------------------------------------------
    def client(self) -> EncordUserClient:
        """The SDK client, created on first use (a file import needs none)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def project(self) -> Project:
        """The review project."""
        if self._project is None:
            project_hash = self.settings.encord_project_hash
            if not project_hash:
                raise ReviewError("Encord: set DATAENGINE_ENCORD_PROJECT_HASH to the review project's hash")
            with encord_errors(f"opening project {project_hash}"):
                self._project = self.client().get_project(project_hash)
        return self._project

    # -- export -----------------------------------------------------------------------------------
    def export_tasks(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        """Register the clips' videos, then save their pre-labels in bundles; data hash per clip.

        Retried with backoff on rate limits and outages: a rerun finds what the last try registered and
        never overwrites labels that are there.
        """
        if not items:
            return {}
        return with_retries(self.settings, "Encord export", lambda: self._export(items))

    def _export(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        outcomes: dict[str, ExportOutcome] = {}
        targets = self._rows_for(items, outcomes)
        project = self.project()
        with encord_errors("reading label rows"), project.create_bundle(bundle_size=BUNDLE_SIZE) as bundle:
            for _, row in targets:
                if not row.is_labelling_initialised:
                    row.initialise_labels(bundle=bundle)
        to_save = []
        for item, row in targets:
            outcomes[item.clip_id] = row.data_hash
            if row.get_object_instances():
                continue  # labels are there already (an earlier run, or a person): never overwrite them
            try:
                labels.add_prelabels(row, project.ontology_structure, item.annotations)
            except (enc_errors.EncordException, KeyError, ValueError) as exc:
                outcomes[item.clip_id] = ReviewError(
                    f"clip {item.clip_id}: pre-labels refused by Encord SDK: {exc}"
                )
                continue
            to_save.append(row)
        with encord_errors("saving pre-labels"), project.create_bundle(bundle_size=BUNDLE_SIZE) as bundle:
            for row in to_save:
                row.save(bundle=bundle)
        return outcomes

    def _rows_for(
        self, items: Sequence[ExportItem], outcomes: dict[str, ExportOutcome]
    ) -> list[tuple[ExportItem, LabelRowV2]]:
        """The label row of each clip, registering the videos not on Encord yet; misses go to ``outcomes``."""
        with encord_errors("listing label rows"):
            rows = self._rows_by_clip()
        missing = [item for item in items if item.clip_id not in rows]
        if missing:
            self._register(missing)
            with encord_errors("listing label rows"):
                rows = self._rows_by_clip()
        targets = []
        for item in items:
            row = rows.get(item.clip_id)
            if row is None:
                outcomes[item.clip_id] = ReviewError(
                    f"clip {item.clip_id}: {labels.data_title(item.clip_id)} is not in Encord project "
                    f"{self.settings.encord_project_hash} after registration (is the dataset attached?)"
                )
            else:
                targets.append((item, row))
        return targets

    def _rows_by_clip(self) -> dict[str, LabelRowV2]:
        return {
            labels.clip_id_of_title(row.data_title): row
            for row in self.project().list_label_rows_v2()
            if row.data_title
        }

    def _register(self, items: Sequence[ExportItem]) -> None:
        """Put the clips' videos into the storage folder and link them into the project's dataset."""
        client = self.client()
        folder_uuid, dataset_hash = self.settings.encord_storage_folder, self.settings.encord_dataset_hash
        if not folder_uuid or not dataset_hash:
            raise ReviewError(
                "Encord: set DATAENGINE_ENCORD_STORAGE_FOLDER and DATAENGINE_ENCORD_DATASET_HASH "
                "(the folder to register clip videos in, and the project's dataset)"
            )
        with encord_errors(f"opening storage folder {folder_uuid}"):
            folder = client.get_storage_folder(folder_uuid)
            dataset = client.get_dataset(dataset_hash)
        if data_path(self.settings.encord_data, self.ctx.store) == "cloud":
            item_uuids = self._register_cloud(client, folder, items)
        else:
            item_uuids = [self._upload(folder, item) for item in items]
        with encord_errors(f"linking {len(item_uuids)} item(s) into dataset {dataset_hash}"):
            dataset.link_items(item_uuids, duplicates_behavior=DataLinkDuplicatesBehavior.SKIP)

    def _register_cloud(
        self, client: EncordUserClient, folder: Any, items: Sequence[ExportItem]
    ) -> list[Any]:
        """Register the videos where they lie in our bucket: Encord reads them through the integration."""
        title = self.settings.encord_integration
        if not title:
            raise ReviewError("Encord: set DATAENGINE_ENCORD_INTEGRATION to the cloud integration's title")
        with encord_errors(f"finding cloud integration {title!r}"):
            found = client.get_cloud_integrations(filter_integration_titles=[title])
        if not found:
            raise ReviewError(f"Encord: no cloud integration titled {title!r}")
        spec = DataUploadItems(
            videos=[self._upload_video(item) for item in items],
            skip_duplicate_urls=True,
            upsert_metadata=False,
        )
        with encord_errors("registering clip videos"):
            job = folder.add_private_data_to_folder_start(found[0].id, spec, ignore_errors=True)
            result = folder.add_private_data_to_folder_get_result(job, timeout_seconds=REGISTER_TIMEOUT)
        if str(getattr(result.status, "value", result.status)) != "DONE" and not result.items_with_names:
            raise RetryableReviewError(
                f"Encord: registering clip videos ended {result.status}: {result.errors}"
            )
        for error in result.errors:
            log.warning("Encord refused a clip video: %s", error)
        return [item.item_uuid for item in result.items_with_names]

    def _upload_video(self, item: ExportItem) -> DataUploadVideo:
        meta = read_meta(self.ctx.store, item.clip_id)
        return DataUploadVideo(
            object_url=self.ctx.store.uri(video_key(item.clip_id)),
            title=labels.data_title(item.clip_id),
            client_metadata={"clip_id": item.clip_id, "exported_version": item.annotations.version},
            video_metadata=labels.video_metadata(
                fps=meta.fps, n_frames=meta.n_frames, width=meta.width, height=meta.height
            ),
        )

    def _upload(self, folder: Any, item: ExportItem) -> Any:
        """Upload the clip's video bytes into the storage folder; returns the item's uuid."""
        meta = read_meta(self.ctx.store, item.clip_id)
        data = self.ctx.store.read_bytes(video_key(item.clip_id))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / labels.data_title(item.clip_id)
            path.write_bytes(data)
            with encord_errors(f"uploading {path.name}"):
                return folder.upload_video(
                    path,
                    title=path.name,
                    client_metadata={"clip_id": item.clip_id, "exported_version": item.annotations.version},
                    video_metadata=labels.video_metadata(
                        fps=meta.fps,
                        n_frames=meta.n_frames,
                        width=meta.width,
                        height=meta.height,
                        size=len(data),
                    ),
                )

    # -- status and import ------------------------------------------------------------------------
    def _final_stage_uuid(self) -> str:
        with encord_errors("reading the workflow"):
            # get_stage() needs a name or uuid; templates may rename "Complete", so go by the type.
            finals = [stage for stage in self.project().workflow.stages if isinstance(stage, FinalStage)]
        if not finals:
            raise ReviewError(
                f"Encord project {self.settings.encord_project_hash} has no final workflow stage"
            )
        return str(finals[0].uuid)

    def review_status(self, external_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """``completed`` for rows in the workflow's final stage, ``pending`` for the others."""
        if not external_ids:
            return {}
        final = self._final_stage_uuid()

        def listed() -> dict[str, LabelRowV2]:
            with encord_errors("listing label rows"):
                found = self.project().list_label_rows_v2(data_hashes=list(external_ids))
            return {row.data_hash: row for row in found}

        rows = with_retries(self.settings, "Encord review status", listed)
        statuses: dict[str, TaskStatus] = {}
        for external_id in external_ids:
            row = rows.get(external_id)
            node = row.workflow_graph_node if row is not None else None
            statuses[external_id] = (
                "missing" if row is None else "completed" if node and str(node.uuid) == final else "pending"
            )
        return statuses

    def task_url(self, external_id: str) -> str:
        """The label editor of the clip video."""
        app = self.settings.encord_domain.replace("://api.", "://app.")
        return f"{app}/label_editor/{self.settings.encord_project_hash}/{external_id}"

    def completed(self, open_tasks: Sequence[OpenTask]) -> Iterator[CompletedReview]:
        """Label rows of ``open_tasks`` that reached the workflow's final stage, labels read in bundles."""
        by_hash = {t.external_id: (t.clip_id, t.exported_version) for t in open_tasks if t.external_id}
        if not by_hash:
            return
        done = with_retries(self.settings, "Encord reviewed labels", lambda: self._finished_rows(by_hash))
        for row in done:
            clip_id, version = by_hash[row.data_hash]
            yield CompletedReview(
                clip_id=clip_id,
                external_id=row.data_hash,
                exported_version=version,
                payload=json.dumps(row.to_encord_dict(), sort_keys=True).encode(),
                source_name=f"encord row {row.data_hash} (clip {clip_id})",
                reviewers=labels.reviewers_of(row),
            )

    def _finished_rows(self, by_hash: dict[str, tuple[str, int]]) -> list[LabelRowV2]:
        """The label rows of ``by_hash`` in the workflow's final stage, their labels read in bundles."""
        final = self._final_stage_uuid()
        with encord_errors("listing label rows"):
            rows = self.project().list_label_rows_v2(data_hashes=sorted(by_hash))
        done = [row for row in rows if row.workflow_graph_node and str(row.workflow_graph_node.uuid) == final]
        with (
            encord_errors("reading reviewed labels"),
            self.project().create_bundle(bundle_size=BUNDLE_SIZE) as bundle,
        ):
            for row in done:
                row.initialise_labels(bundle=bundle, overwrite=True)
        return done

    def to_annotations(self, review: CompletedReview, *, exported: ClipAnnotations) -> ClipAnnotations:
        """The reviewed labels of a label row, in pixels, checked against the exported version."""
        return payload_to_annotations(review.payload, exported=exported, source_name=review.source_name)

    def read_export(self, path: str | Path) -> list[ExportRow]:
        """The rows of a label export file (a JSON list of label rows), each naming its clip or a problem.

        A row maps to its clip by ``data_title`` (the clip id, with or without a file extension).
        """
        return [_export_row(path, i, row) for i, row in enumerate(read_export_file(path))]


def _export_row(path: str | Path, i: int, row: Any) -> ExportRow:
    name = f"{path} row {i}"
    if not isinstance(row, dict):
        return ExportRow(i, name, None, problem=f"a label row is a JSON object, not {type(row).__name__}")
    title = row.get("data_title")
    if not isinstance(title, str) or not title.strip():
        return ExportRow(i, name, None, problem="it has no data_title naming its clip")
    clip_id = labels.clip_id_of_title(title.strip())
    return ExportRow(
        index=i,
        name=f"{name} (clip {clip_id})",
        clip_id=clip_id,
        payload=json.dumps(row, sort_keys=True).encode(),
        reviewers=_file_reviewers(row, source_name=name),
        external_id=str(row.get("data_hash") or ""),
    )


def data_path(setting: str, store: Any) -> str:
    """How clip videos reach Encord: ``upload`` (their bytes, from any store) or ``cloud`` (Encord reads
    them from our bucket through a cloud integration, so only an ``s3://`` store can be ``cloud``)."""
    if setting != "cloud":
        return "upload"
    if not store.url.startswith("s3://"):
        scheme = store.url.partition("://")[0]
        raise ReviewError(
            f"Encord: DATAENGINE_ENCORD_DATA=cloud needs an s3:// store that Encord's cloud integration can "
            f"read; the store {store.url} is {scheme}://, so its clips must be uploaded "
            "(DATAENGINE_ENCORD_DATA=upload)"
        )
    return "cloud"


def read_export_file(path: str | Path) -> list[Any]:
    """The label rows of an Encord label export file; a :class:`FormatError` naming it otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable JSON label export: {exc}") from exc
    rows = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) else None
    if rows is None:
        raise FormatError(f"{path}: an Encord label export is a JSON list of label rows")
    return rows


def payload_to_annotations(payload: bytes, *, exported: ClipAnnotations, source_name: str) -> ClipAnnotations:
    """A label row (JSON bytes) as reviewed labels of the exported clip version."""
    from dataengine.errors import AnnotationValidationError

    try:
        row = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationValidationError(source_name, "$", f"not JSON: {exc}") from exc
    if not isinstance(row, dict):
        raise AnnotationValidationError(source_name, "$", "a label row is a JSON object")
    structure = labels.structure_from_row(row, source_name=source_name)
    parsed = labels.parse_row(row, labels.offline_ontology(structure), source_name=source_name)
    return labels.to_annotations(parsed, exported=exported, source_name=source_name)


def _file_reviewers(row: dict[str, Any], *, source_name: str) -> list[str]:
    """The reviewers of an export row; an unreadable row names none (the import then refuses it)."""
    try:
        structure = labels.structure_from_row(row, source_name=source_name)
        return labels.reviewers_of(
            labels.parse_row(row, labels.offline_ontology(structure), source_name=source_name)
        )
    except DataEngineError:
        return []
