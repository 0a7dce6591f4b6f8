"""Settings: defaults, environment, TOML file and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.config import load_settings
from dataengine.errors import ConfigError


def test_defaults_are_the_embedded_engine() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./.dataengine/lineage.db"
    assert settings.storage_url == "file://./.dataengine/store"
    assert settings.review_platform == "local"
    assert settings.classes == ["person", "bed", "wheelchair"]


def test_environment_overrides_toml_which_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "dataengine.toml").write_text(
        'clip_seconds = 4.0\nbudget_fraction = 0.2\nclasses = ["a", "b"]\n'
    )
    monkeypatch.setenv("DATAENGINE_BUDGET_FRACTION", "0.05")
    settings = load_settings()
    assert settings.clip_seconds == 4.0
    assert settings.budget_fraction == 0.05
    assert settings.classes == ["a", "b"]
    assert load_settings(clip_seconds=7).clip_seconds == 7


def test_named_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text('database_url = "postgresql://db/lineage"\n')
    monkeypatch.setenv("DATAENGINE_CONFIG", str(path))
    assert load_settings().database_url == "postgresql://db/lineage"
    monkeypatch.setenv("DATAENGINE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("DATAENGINE_BUDGET_FRACTION", "1.5", "budget_fraction"),
        ("DATAENGINE_CLIP_SECONDS", "0", "clip_seconds"),
        ("DATAENGINE_REVIEW_PLATFORM", "paper", "review_platform"),
        ("DATAENGINE_CLASSES", '["a", "a"]', "unique"),
    ],
)
def test_invalid_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAENGINE_LABELSTUDIO_API_KEY", "s3cr3t")
    settings = load_settings()
    assert settings.labelstudio_api_key is not None
    assert settings.labelstudio_api_key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in str(settings.public_dict())
    assert "s3cr3t" not in repr(settings)
