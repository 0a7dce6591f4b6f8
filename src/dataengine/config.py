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
from dataengine.redaction import mask_options, mask_url

DEFAULT_CONFIG_FILE = "dataengine.toml"
#: In ``autolabel_models``: the model promoted when autolabel runs.
PROMOTED_ALIAS = "promoted"


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
    # Ingest (docs/ingest.md): camera and time from the path under landing/, else the container's tags.
    ingest_path_pattern: str = "{camera}/{date}/{time}.*"
    # JPEGs are shrunk to this longest side (0 keeps the video's size).
    jpeg_max_side: int = Field(0, ge=0)
    # A clip boundary moves up to this many seconds to a keyframe, so the clip is a stream copy.
    keyframe_tolerance: float = Field(1.0, ge=0)
    ingest_codecs: list[str] = Field(
        default_factory=lambda: ["h264", "hevc", "mpeg4", "mpeg2video", "vp8", "vp9", "av1", "mjpeg"]
    )
    # Threads that encode and write sampled JPEGs beside the decoder.
    ingest_jpeg_workers: int = Field(2, ge=1)
    # Leave out of the decoder the H.264 frames nothing is made from and nothing refers to (docs/ingest.md);
    # False decodes every frame, so that damage in a frame no sample needs is still found.
    ingest_skip_frames: bool = True
    # Split at scene cuts (mean grey-level change of a 32x18 thumbnail, 0-255) as well as every clip_seconds.
    split_on_scene_cuts: bool = False
    scene_cut_threshold: float = Field(25.0, gt=0)
    min_clip_seconds: float = Field(1.0, ge=0)
    # Drop a clip whose sampled frames all stay within this grey-level change of the last kept clip.
    drop_duplicate_clips: bool = False
    duplicate_threshold: float = Field(3.0, gt=0)
    # Videos per mapped ingest task in the ingest_daily DAG.
    ingest_batch_size: int = Field(8, ge=1)

    # Triggers and selection (docs/triggers.md).
    budget_fraction: float = Field(0.001, gt=0, le=1)
    budget_count: int | None = Field(None, ge=0)
    # A clip whose combined trigger score reaches this has fired: a fractional budget then picks >= 1 clip.
    trigger_score_threshold: float = Field(0.5, ge=0, le=1)
    # Detections down to this score reach the triggers (score_threshold makes one confident): near misses
    # are the flicker trigger's low-confidence signal.
    trigger_candidate_threshold: float = Field(0.05, ge=0, le=1)
    # Weight of each trigger in the combined score; a trigger not named weighs 1. The anomaly score is a
    # percentile, uniform on ordinary clips, so it weighs less: only its top half outranks firm evidence.
    trigger_weights: dict[str, float] = Field(default_factory=lambda: {"anomaly": 0.5})
    # "max": the strongest weighted trigger decides (rare events fire one trigger); "mean": the average.
    trigger_combine: Literal["max", "mean"] = "max"
    # "rank": before combining, each trigger's score becomes its surprise among the run's candidates
    # (log of one over the share of clips scoring at least as high), so a score many ordinary clips reach
    # cannot crowd out one that no other clip reaches; "none": combine the raw scores. Firing (the
    # threshold above) always reads the raw scores.
    trigger_calibration: Literal["rank", "none"] = "rank"
    # Triggers to run (all registered ones when empty).
    triggers: list[str] = Field(default_factory=list)
    # The disagreement trigger's second model (e.g. another architecture); default: the previous promoted.
    trigger_reference_model: str | None = None
    # Diversity: at most this share of a run's picks from one video, and from one camera.
    selection_max_video_share: float = Field(0.5, gt=0, le=1)
    selection_max_camera_share: float = Field(0.5, gt=0, le=1)
    # Anomaly autoencoder: how many recent clips it trains on, and for how many epochs.
    anomaly_train_clips: int = Field(200, gt=0)
    anomaly_epochs: int = Field(8, gt=0)

    # Models.
    detector_arch: str = "tiny_fasterrcnn"
    classes: list[str] = Field(default_factory=lambda: ["person", "bed", "wheelchair"])
    # The detector sees 320x240 frames at 256x192: as accurate on the synthetic data, ~16% less per epoch.
    image_min_size: int = Field(192, gt=0)
    image_max_size: int = Field(256, gt=0)
    score_threshold: float = Field(0.5, ge=0, le=1)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")

    # Autolabel (docs/autolabel.md): the ensemble, the tracker and the hindsight pass.
    # Model ids of the ensemble. "promoted" stands for whichever model is promoted at the time, so the
    # ensemble follows promotions: e.g. ["promoted", "m-0123456789"] (an imported open-vocabulary model).
    autolabel_models: list[str] = Field(default_factory=lambda: [PROMOTED_ALIAS])
    # Weights of autolabel_models in Weighted Boxes Fusion, in the same order; empty means all 1.
    autolabel_model_weights: list[float] = Field(default_factory=list)
    # Per-class score thresholds of fused boxes (class name -> threshold); others use score_threshold.
    autolabel_class_thresholds: dict[str, float] = Field(default_factory=dict)
    autolabel_wbf_iou: float = Field(0.55, gt=0, le=1)
    # Boxes between this and the class threshold only extend existing tracks (ByteTrack's second pass).
    autolabel_low_score: float = Field(0.1, ge=0, le=1)
    autolabel_track_iou: float = Field(0.3, gt=0, le=1)
    # Hindsight: fill gaps up to K sampled frames, drop tracks under M frames, Gaussian sigma in frames.
    autolabel_gap_frames: int = Field(4, ge=0)
    autolabel_min_track_frames: int = Field(3, ge=1)
    autolabel_smoothing: float = Field(1.0, ge=0)
    # How WBF scores a fused box (ensemble-boxes' conf_type; docs/autolabel.md "Ensemble" says why).
    autolabel_conf_type: Literal["max", "box_and_model_avg", "absent_model_aware_avg", "avg"] = (
        "box_and_model_avg"
    )
    # Members whose held-out mAP@0.5 is more than this below the best member's are left out.
    autolabel_drop_margin: float = Field(0.10, ge=0, le=1)
    # A track its class's strongest member sees on at least this share of its frames keeps its score.
    autolabel_recover_share: float = Field(0.5, gt=0, le=1)
    # The score at which a box of a class's strongest member may start a track the fused boxes did not
    # (never below the class's threshold); above 1, never.
    autolabel_strong_start: float = Field(0.8, ge=0)
    autolabel_batch_size: int = Field(8, gt=0)
    # DataLoader workers that read and decode frames ahead of the detector; 0 reads in the caller.
    autolabel_workers: int = Field(1, ge=0)
    # Batches of frames read ahead (by each worker, or with no workers by a thread of the caller that
    # decodes while the detectors run); 0 with no workers decodes each batch when it is needed.
    autolabel_prefetch: int = Field(2, ge=0)

    # Training.
    # Measured in docs/training.md: ~65 s on 2 CPU cores for 240 frames, mAP@.5 ~0.9 on held-out videos.
    train_epochs: int = Field(16, gt=0)
    train_batch_size: int = Field(4, gt=0)
    train_lr: float = Field(0.02, gt=0)
    # Two ranks measured 1.14x faster than one on 2 CPU cores; on CUDA it is capped at the GPU count.
    train_nproc: int = Field(2, gt=0)
    # Several machines (docs/operations.md, "Multi-node training"): nodes of one torchrun job, "1" (this
    # machine alone, --standalone), "2", or an elastic range "2:4" (the job starts once 2 have joined).
    train_nnodes: str = "1"
    # host:port of the rendezvous store, reachable from every node (the first node's address).
    train_rdzv_endpoint: str | None = None
    # "c10d" assigns ranks as nodes join; "static" takes them from train_node_rank.
    train_rdzv_backend: Literal["c10d", "static"] = "c10d"
    # Seconds a node waits for the others before the job fails with a rendezvous timeout.
    train_rdzv_timeout: float = Field(600.0, gt=0)
    # This node's index in the job: node 0 launches it and registers the model; the others join it.
    train_node_rank: int = Field(0, ge=0)
    # The address the other nodes reach this one at (torchrun --local-addr); default: its hostname.
    train_local_addr: str | None = None
    train_seed: int = 0
    # Start from the promoted model's weights when it has the same architecture and classes.
    train_warm_start: bool = True
    # Epochs of a warm-started run (at most train_epochs): keeps a round under 90 s as the data grows.
    train_warm_epochs: int = Field(10, gt=0)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    # What a split keeps together: "video", or "camera" (videos without a camera fall back to "video").
    split_by: Literal["video", "camera"] = "video"
    # A class found in at least this many videos (or cameras) gets one of them in val and one in train.
    split_min_class_videos: int = Field(3, ge=2)
    # The promotion gate (docs/training.md, "Promotion"): the edge-case mAP must rise by more than
    # promote_min_delta; the regression set's mAP may fall by at most promote_map_tolerance; a class with
    # at least promote_min_class_support boxes in a set may lose at most its tolerance of AP there.
    promote_min_delta: float = Field(0.0, ge=0)
    promote_map_tolerance: float = Field(0.02, ge=0, le=1)
    promote_class_tolerance: float = Field(0.05, ge=0, le=1)
    promote_class_tolerances: dict[str, float] = Field(default_factory=dict)
    promote_min_class_support: int = Field(10, ge=1)

    # Review.
    # "simulated" is a SIMULATION of a reviewer from synthetic ground truth: demo and tests only.
    review_platform: Literal["local", "encord", "labelstudio", "simulated"] = "local"
    # Retries of a rate-limited or briefly unreachable platform inside a task (backoff with jitter).
    review_retry_attempts: int = Field(4, ge=1)
    review_retry_wait: float = Field(1.0, ge=0)
    review_retry_max_wait: float = Field(30.0, ge=0)
    encord_ssh_key_file: str | None = None
    # The key itself (Airflow's review operators fill it from the `encord_default` Connection).
    encord_ssh_key: SecretStr | None = None
    encord_project_hash: str | None = None
    encord_domain: str = "https://api.encord.com"
    # "cloud": register clip videos from our bucket through a cloud integration; "upload": send the bytes.
    encord_data: Literal["cloud", "upload"] = "upload"
    encord_integration: str | None = None
    encord_storage_folder: str | None = None
    encord_dataset_hash: str | None = None
    labelstudio_url: str | None = None
    # A personal access token (refresh token) or, with legacy tokens enabled, a legacy token.
    labelstudio_api_key: SecretStr | None = None
    labelstudio_project_title: str = "dataengine review"
    # Label Studio's LOCAL_FILES_DOCUMENT_ROOT, for a file:// store: task videos are served from there as
    # /data/local-files/?d=<path below it>. Default: the store's own folder.
    labelstudio_document_root: str | None = None
    # Minutes a presigned URL of an s3:// store's clip stays valid (Label Studio's S3 source storage).
    labelstudio_presign_minutes: int = Field(60, ge=1)

    @field_validator("train_nnodes")
    @classmethod
    def _nnodes_range(cls, value: str) -> str:
        low, _, high = str(value).partition(":")
        try:
            bounds = (int(low), int(high or low))
        except ValueError:
            raise ValueError(
                f"train_nnodes must be a count like 2 or a range like 2:4, got {value!r}"
            ) from None
        if not 1 <= bounds[0] <= bounds[1]:
            raise ValueError(f"train_nnodes needs 1 <= MIN <= MAX, got {value!r}")
        return str(value)

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
        """Settings safe to print or log: secret fields, passwords inside URLs (the database, Label
        Studio, an S3 endpoint) and credentials in the storage options are masked."""
        data: dict[str, Any] = self.model_dump(mode="json")  # SecretStr fields come out masked
        data["storage_options"] = mask_options(data["storage_options"])
        return {key: mask_url(value) if isinstance(value, str) else value for key, value in data.items()}


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
        config_file = _config_file()
        source = f" (environment and {config_file})" if config_file else ""
        raise ConfigError(f"invalid dataengine settings{source}: {exc}") from exc
