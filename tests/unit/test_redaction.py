"""Secrets never reach output: settings, URLs with passwords, storage credentials, Label Studio errors."""

from __future__ import annotations

import json

import pytest

from dataengine.config import Settings
from dataengine.errors import ReviewError
from dataengine.redaction import MASK, mask_url
from dataengine.review.platforms.labelstudio import LabelStudioClient

SECRETS = ("hunter2", "AKIAEXAMPLEKEYID", "s3cr3t-value", "minio-pw", "session-tok", "lspass", "ls-api-key")


def test_public_dict_masks_secrets_inside_urls_and_storage_options() -> None:
    settings = Settings(
        database_url="postgresql+psycopg2://dataengine:hunter2@db:5432/lineage",
        storage_url="s3://camera-data/dataengine",
        storage_options={
            "key": "AKIAEXAMPLEKEYID",
            "secret": "s3cr3t-value",
            "client_kwargs": {
                "endpoint_url": "http://minio:minio-pw@minio:9000",
                "aws_session_token": "session-tok",
                "region_name": "eu-west-1",
            },
        },
        labelstudio_url="http://admin:lspass@labelstudio:8080",
        labelstudio_api_key="ls-api-key",
    )
    public = settings.public_dict()
    text = json.dumps(public)
    assert [secret for secret in SECRETS if secret in text] == []
    # What is not secret is still there to read.
    assert public["database_url"] == f"postgresql+psycopg2://dataengine:{MASK}@db:5432/lineage"
    assert public["labelstudio_url"] == f"http://admin:{MASK}@labelstudio:8080"
    options = public["storage_options"]
    assert (options["key"], options["secret"]) == (MASK, MASK)
    assert options["client_kwargs"]["endpoint_url"] == f"http://minio:{MASK}@minio:9000"
    assert options["client_kwargs"]["region_name"] == "eu-west-1"
    assert public["storage_url"] == "s3://camera-data/dataengine"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("https://u:p%40ss@host/path?x=1", f"https://u:{MASK}@host/path?x=1"),
        ("https://host/api?token=abc&page=2", f"https://host/api?token={MASK}&page=2"),
        ("not a url", "not a url"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_label_studio_unreachable_error_masks_the_url_password() -> None:
    client = LabelStudioClient("http://admin:lspass@127.0.0.1:9", "ls-api-key")
    with pytest.raises(ReviewError) as raised:
        client.call("GET", "/api/projects")
    message = str(raised.value)
    assert "unreachable" in message
    assert "lspass" not in message
    assert "ls-api-key" not in message
    assert f"http://admin:{MASK}@127.0.0.1:9" in message
