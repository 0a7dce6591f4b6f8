"""The review operators under Airflow: credentials from Connections, platform errors as retries."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from encord import exceptions as enc_errors

from dataengine.airflow.operators import ReviewExportOperator, with_review_credentials
from dataengine.context import Context
from dataengine.lineage.clips import get_clip

pytestmark = pytest.mark.airflow

# The clip maker and the Label Studio server.
pytest_plugins = ["review_fixtures"]

KEY = "\n".join(
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "not-a-real-key-material-0123456789",
        "-----END OPENSSH PRIVATE KEY-----",
    ]
)


def test_credentials_come_from_the_airflow_connections(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert with_review_credentials(ctx, "encord") is ctx  # no Connection: the settings stay
    monkeypatch.setenv("AIRFLOW_CONN_ENCORD_DEFAULT", json.dumps({"conn_type": "generic", "password": KEY}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_LABELSTUDIO_DEFAULT",
        '{"conn_type": "http", "host": "labelstudio.internal", "port": 8080, "password": "pat-token-123"}',
    )
    encord = with_review_credentials(ctx, "encord")
    assert encord.settings.encord_ssh_key is not None
    assert encord.settings.encord_ssh_key.get_secret_value() == KEY
    assert KEY not in repr(encord.settings)
    assert "not-a-real-key" not in str(encord.settings.public_dict())
    studio = with_review_credentials(ctx, "labelstudio")
    assert studio.settings.labelstudio_url == "http://labelstudio.internal:8080"
    assert studio.settings.labelstudio_api_key is not None
    assert studio.settings.labelstudio_api_key.get_secret_value() == "pat-token-123"
    assert with_review_credentials(ctx, "local") is ctx
    assert "not-a-real-key" not in caplog.text


class _FailingEncord:
    """A FAKE Encord client whose every project call fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_project(self, project_hash: str) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (enc_errors.RateLimitExceededError(retry_after=30), AirflowException),
        (enc_errors.RequestException("connection reset"), AirflowException),
        (enc_errors.AuthenticationError("bad key"), AirflowFailException),
    ],
)
def test_fake_encord_errors_become_airflow_retries_or_failures(
    ctx: Context,
    make_clip: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    raised: type[Exception],
) -> None:
    clip_id = make_clip(ctx, 0)
    for name, value in {
        "DATAENGINE_DATABASE_URL": ctx.settings.database_url,
        "DATAENGINE_STORAGE_URL": ctx.settings.storage_url,
        "DATAENGINE_REVIEW_PLATFORM": "encord",
        "DATAENGINE_ENCORD_PROJECT_HASH": "project-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("dataengine.review.platforms.encord.connect", lambda settings: _FailingEncord(error))
    operator = ReviewExportOperator(task_id="export")
    ti = SimpleNamespace(dag_id="review_export", run_id="manual__1", task_id="export", map_index=-1)
    with pytest.raises(raised) as caught:
        operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    # A retry is a plain AirflowException; AirflowFailException (a subclass) stops the retries.
    assert isinstance(caught.value, AirflowFailException) == (raised is AirflowFailException)
    assert type(error).__name__ in str(caught.value)
    with ctx.db.session() as session:
        assert get_clip(session, clip_id).stage == "autolabelled"
