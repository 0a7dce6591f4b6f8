"""Settings for every entry point: environment (prefix ``DATAENGINE_``) over a TOML file over defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dataengine.errors import ConfigError

DEFAULT_CONFIG_FILE = "dataengine.toml"


class Settings(BaseSettings):
    """Every tunable of the engine. Build it once per entry point with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="DATAENGINE_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    # Where things live.
    database_url: str = "sqlite:///./.dataengine/lineage.db"
    storage_url: str = "file://./.dataengine/store"
    # Extra fsspec options for the store, e.g. {"endpoint_url": "http://minio:9000"} for S3.
    storage_options: dict[str, Any] = Field(default_factory=dict)

    # Ingest.
    clip_seconds: float = Field(10.0, gt=0)
    sample_fps: float = Field(2.0, ge=0, description="0 samples every frame")
    jpeg_quality: int = Field(90, ge=1, le=100)
    max_resolution: int = Field(8192, gt=0, description="longest side above which a video is refused")
    landing_prefix: str = "landing"

    # Triggers and selection.
    budget_fraction: float = Field(0.1, gt=0, le=1)
    budget_count: int | None = Field(None, ge=0)
    trigger_score_threshold: float = Field(0.5, ge=0, le=1)

    # Models.
    detector_arch: str = "tiny_fasterrcnn"
    classes: list[str] = Field(default_factory=lambda: ["person", "bed", "wheelchair"])
    # The detector sees 320x240 frames at 256x192: as accurate on the synthetic data, ~16% less per epoch.
    image_min_size: int = Field(192, gt=0)
    image_max_size: int = Field(256, gt=0)
    score_threshold: float = Field(0.5, ge=0, le=1)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")

    # Training.
    # Measured in docs/training.md: ~65 s on 2 CPU cores for 240 frames, mAP@.5 ~0.9 on held-out videos.
    train_epochs: int = Field(16, gt=0)
    train_batch_size: int = Field(4, gt=0)
    train_lr: float = Field(0.02, gt=0)
    # Two ranks measured 1.14x faster than one on 2 CPU cores; on CUDA it is capped at the GPU count.
    train_nproc: int = Field(2, gt=0)
    train_seed: int = 0
    # Start from the promoted model's weights when it has the same architecture and classes.
    train_warm_start: bool = True
    # Epochs of a warm-started run (at most train_epochs): keeps a round under 90 s as the data grows.
    train_warm_epochs: int = Field(10, gt=0)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    promote_min_delta: float = Field(0.0, ge=0)

    # Review.
    review_platform: Literal["local", "encord", "labelstudio"] = "local"
    review_simulate: bool = False
    encord_ssh_key_file: str | None = None
    encord_project_hash: str | None = None
    labelstudio_url: str | None = None
    labelstudio_api_key: SecretStr | None = None

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one class is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"class names must be unique, got {value}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to print or log: secrets are masked by pydantic."""
        return self.model_dump(mode="json")


def _config_file() -> Path | None:
    named = os.environ.get("DATAENGINE_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"DATAENGINE_CONFIG names {path}, which is not a file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and the TOML file, in that order."""
    try:
        return Settings(**overrides)
    except ValueError as exc:
        raise ConfigError(f"invalid dataengine settings: {exc}") from exc
