"""The ``labelstudio`` review platform: a self-hosted Label Studio, through its REST API.

One project (``DATAENGINE_LABELSTUDIO_PROJECT_TITLE``, created on first export) with a video
object-tracking config (``VideoRectangle``). A clip version is one task (its id is the external id) whose
data names the clip video; our tracks are its prediction. A task with a submitted, not cancelled,
annotation is a finished review; its newest annotation is imported.

Frames: Label Studio numbers video frames from 1, so clip frame ``i`` is Label Studio frame ``i + 1``
at time ``i / fps``. Boxes are percent of the frame. A track's keyframes lie on the exported (sampled)
frames; ``enabled`` says whether the box lives on until the next keyframe. On import, an exported frame
gets a track's box from a keyframe on that frame, or by linear interpolation between the keyframes
around it while the earlier one is enabled, as the Label Studio editor shows it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataengine.clips import read_meta, video_key
from dataengine.errors import AnnotationValidationError, FormatError, ReviewError
from dataengine.formats import ClipAnnotations
from dataengine.redaction import mask_url
from dataengine.review.base import CompletedReview, ExportRow, RetryableReviewError
from dataengine.review.platforms.labelstudio_media import connect_storage, video_url
from dataengine.review.platforms.labelstudio_regions import (
    label_config,
    prediction_result,
    result_to_annotations,
)
from dataengine.review.retrying import with_retries

if TYPE_CHECKING:
    from dataengine.context import Context
    from dataengine.review.base import ExportItem, ExportOutcome, OpenTask, TaskStatus

PLATFORM = "labelstudio"
#: A clip id anywhere in a text (a task's video URL or path).
CLIP_ID = re.compile(r"[0-9a-f]{16}-[0-9]{7}")
_TIMEOUT = 60


class LabelStudioClient:
    """The few REST calls we make; a personal access token is exchanged for short-lived access tokens."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._access: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; transient failures raise :class:`RetryableReviewError`."""
        try:
            return self._send(method, path, body, self._authorisation())
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and self._access is not None:
                self._access = None  # the access token expired: refresh it once
                return self._send(method, path, body, self._authorisation())
            raise

    def _authorisation(self) -> str:
        if self._token.count(".") != 2:  # not a JWT: a legacy token
            return f"Token {self._token}"
        if self._access is None:
            reply = self._send("POST", "/api/token/refresh/", {"refresh": self._token}, None)
            self._access = str(reply["access"])
        return f"Bearer {self._access}"

    def _send(self, method: str, path: str, body: Any, authorisation: str | None) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authorisation:
            headers["Authorization"] = authorisation
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as reply:
                text = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if exc.code == 429 or exc.code >= 500:
                raise RetryableReviewError(
                    f"Label Studio {method} {path}: HTTP {exc.code}: {detail}"
                ) from exc
            if exc.code == 401 and authorisation and authorisation.startswith("Bearer"):
                raise
            raise ReviewError(f"Label Studio {method} {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            where = mask_url(self.url)
            raise RetryableReviewError(f"Label Studio at {where} is unreachable: {exc}") from exc
        return json.loads(text) if text else None


class LabelStudioPlatform:
    """Review on a self-hosted Label Studio at ``DATAENGINE_LABELSTUDIO_URL``."""

    name = PLATFORM

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._client: LabelStudioClient | None = None
        self._project_id: int | None = None

    @property
    def client(self) -> LabelStudioClient:
        """The REST client; the server's settings are needed only here (a file import needs none)."""
        if self._client is None:
            url, key = self.ctx.settings.labelstudio_url, self.ctx.settings.labelstudio_api_key
            if not url or key is None:
                raise ReviewError(
                    "Label Studio: set DATAENGINE_LABELSTUDIO_URL and DATAENGINE_LABELSTUDIO_API_KEY "
                    "(a personal access token from Account & Settings)"
                )
            self._client = LabelStudioClient(url, key.get_secret_value())
        return self._client

    def project_id(self, classes: Sequence[str] | None = None) -> int:
        """The review project's id; created (with ``classes``) when there is none yet."""
        if self._project_id is None:
            title = self.ctx.settings.labelstudio_project_title
            projects = self._get("/api/projects?page_size=1000")["results"]
            found = [p["id"] for p in projects if p.get("title") == title]
            if found:
                self._project_id = int(found[0])
            else:
                config = label_config(classes or self.ctx.settings.classes)
                created = self.client.call("POST", "/api/projects", {"title": title, "label_config": config})
                self._project_id = int(created["id"])
            connect_storage(self.client, self._project_id, self.ctx.settings, self.ctx.store)
        return self._project_id

    def _tasks(self) -> list[dict[str, Any]]:
        project, page, tasks = self.project_id(), 1, []
        while True:
            reply = self._get(f"/api/tasks?project={project}&page={page}&page_size=100")
            tasks += reply["tasks"]
            if len(tasks) >= int(reply.get("total", 0)) or not reply["tasks"]:
                return tasks
            page += 1

    def _get(self, path: str) -> Any:
        """A GET, retried with backoff on rate limits and outages."""
        what = f"Label Studio GET {path}"
        return with_retries(self.ctx.settings, what, lambda: self.client.call("GET", path))

    def export_tasks(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        """One task per clip version with our tracks as its prediction; existing tasks are reused.

        Retried with backoff on rate limits and outages: each try lists the project's tasks first, so a
        task the last try created is reused, not made twice.
        """
        if not items:
            return {}
        return with_retries(self.ctx.settings, "Label Studio export", lambda: self._export(items))

    def _export(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        self.project_id(items[0].annotations.classes)
        existing = {
            (t["data"].get("clip_id"), t["data"].get("exported_version")): str(t["id"]) for t in self._tasks()
        }
        outcomes: dict[str, ExportOutcome] = {}
        for item in items:
            key = (item.clip_id, item.annotations.version)
            outcomes[item.clip_id] = existing.get(key) or self._create_task(item)
        return outcomes

    def _create_task(self, item: ExportItem) -> str:
        meta = read_meta(self.ctx.store, item.clip_id)
        data = {
            "video": video_url(self.ctx.settings, self.ctx.store, video_key(item.clip_id)),
            "fps": meta.fps,
            "clip_id": item.clip_id,
            "exported_version": item.annotations.version,
        }
        task = self.client.call("POST", "/api/tasks", {"project": self.project_id(), "data": data})
        models = item.annotations.producer.get("models", [])
        result = prediction_result(item.annotations, fps=meta.fps, n_frames=meta.n_frames)
        scores = [
            box.score for frame in item.annotations.frames for box in frame.boxes if box.score is not None
        ]
        self.client.call(
            "POST",
            "/api/predictions",
            {
                "task": task["id"],
                "result": result,
                "score": sum(scores) / len(scores) if scores else None,
                "model_version": ",".join(str(m) for m in models) or "autolabel",
            },
        )
        return str(task["id"])

    def review_status(self, external_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """``completed`` once a task has a submitted annotation."""
        statuses: dict[str, TaskStatus] = {}
        for external_id in external_ids:
            try:
                task = self._get(f"/api/tasks/{int(external_id)}")
            except ReviewError as exc:
                if "HTTP 404" not in str(exc):
                    raise
                statuses[external_id] = "missing"
                continue
            statuses[external_id] = "completed" if _latest_annotation(task) else "pending"
        return statuses

    def task_url(self, external_id: str) -> str:
        """The task in the Label Studio editor."""
        return f"{mask_url(self.client.url)}/projects/{self.project_id()}/data?task={external_id}"

    def completed(self, open_tasks: Sequence[OpenTask]) -> Iterator[CompletedReview]:
        """The ``open_tasks`` with a submitted annotation; the task (with its annotations) is the payload."""
        for clip_id, version, external_id in [
            (t.clip_id, t.exported_version, t.external_id) for t in open_tasks if t.external_id
        ]:
            task = self._get(f"/api/tasks/{int(external_id)}")
            annotation = _latest_annotation(task)
            if annotation is None:
                continue
            who = annotation.get("completed_by")
            reviewer = who.get("email") if isinstance(who, dict) else who
            lead_time = annotation.get("lead_time")
            yield CompletedReview(
                clip_id=clip_id,
                external_id=external_id,
                exported_version=version,
                payload=json.dumps(task, sort_keys=True).encode(),
                source_name=f"labelstudio task {external_id} (clip {clip_id})",
                reviewers=[str(reviewer)] if reviewer is not None else [],
                seconds=float(lead_time) if isinstance(lead_time, int | float) else None,
            )

    def read_export(self, path: str | Path) -> list[ExportRow]:
        """The tasks of a Label Studio JSON export, each naming its clip or a problem."""
        return [_export_row(path, i, task) for i, task in enumerate(read_export_file(path))]

    def to_annotations(self, review: CompletedReview, *, exported: ClipAnnotations) -> ClipAnnotations:
        """The newest annotation of the task, in pixels of the exported frames."""
        try:
            task = json.loads(review.payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationValidationError(review.source_name, "$", f"not JSON: {exc}") from exc
        annotation = _latest_annotation(task) if isinstance(task, dict) else None
        if annotation is None:
            raise AnnotationValidationError(review.source_name, "$.annotations", "no submitted annotation")
        return result_to_annotations(
            annotation.get("result"), exported=exported, source_name=review.source_name
        )


def read_export_file(path: str | Path) -> list[Any]:
    """The tasks of a Label Studio JSON export (a list of tasks); a :class:`FormatError` otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable Label Studio JSON export: {exc}") from exc
    if not isinstance(doc, list):
        raise FormatError(f"{path}: a Label Studio JSON export is a list of tasks")
    return doc


def _clip_of(data: dict[str, Any]) -> str | None:
    """The clip a task's data names: its ``clip_id``, else the clip id in its video's path or URL."""
    named = data.get("clip_id")
    if isinstance(named, str) and CLIP_ID.fullmatch(named):
        return named
    found = CLIP_ID.search(str(data.get("video", "")))
    return found.group(0) if found else None


def _export_row(path: str | Path, i: int, task: Any) -> ExportRow:
    name = f"{path} task {i}"
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        return ExportRow(i, name, None, problem="a task is a JSON object with a 'data' object")
    clip_id = _clip_of(task["data"])
    if clip_id is None:
        return ExportRow(i, name, None, problem="its data names no clip (no clip_id, no clip id in 'video')")
    name = f"{name} (clip {clip_id})"
    annotation = _latest_annotation(task)
    if annotation is None:
        return ExportRow(i, name, clip_id, problem="it has no submitted annotation")
    who = annotation.get("completed_by")
    reviewer = who.get("email") if isinstance(who, dict) else who
    return ExportRow(
        index=i, name=name, clip_id=clip_id, payload=json.dumps(task, sort_keys=True).encode(),
        reviewers=[str(reviewer)] if reviewer is not None else [], external_id=str(task.get("id", "")),
    )  # fmt: skip


def _latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    return max(done, key=lambda a: (str(a.get("updated_at", "")), int(a.get("id", 0)))) if done else None
