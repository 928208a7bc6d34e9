"""One settings object, read from the environment and an optional `.env`.

`load_settings()` turns every validation problem into one `SettingsError` line naming the
setting and the reason; secrets are never echoed back.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import UserError


class SettingsError(UserError):
    """A setting is wrong or missing; the message is one line a user can act on."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "segbot"


# The base model the repository ships (models/base-tiny: half-precision weights and a MANIFEST.json
# naming its data, command and commit): every `init auto` training of its preset starts from it.
SHIPPED_BASE_MODEL = Path(__file__).resolve().parent.parent / "models" / "base-tiny"
NO_BASE_MODEL = ("none", "off", "random")  # SEGBOT_BASE_MODEL values that turn the base model off


def shipped_base_model() -> Path | None:
    """The repository's base model when it is there (a checkout without it trains from random)."""
    return SHIPPED_BASE_MODEL if (SHIPPED_BASE_MODEL / "bundle.json").is_file() else None


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=True)

    # Telegram
    telegram_bot_token: SecretStr | None = Field(None, validation_alias=_env("TELEGRAM_BOT_TOKEN"))
    telegram_api_base_url: str = Field("https://api.telegram.org/bot",
                                       validation_alias=_env("TELEGRAM_API_BASE_URL"))
    telegram_api_base_file_url: str = Field("https://api.telegram.org/file/bot",
                                            validation_alias=_env("TELEGRAM_API_BASE_FILE_URL"))
    # Mini App (web/): the public HTTPS base Telegram opens; unset = no Review button, no web server
    webapp_url: str | None = Field(None, validation_alias=_env("SEGBOT_WEBAPP_URL"))
    web_host: str = Field("127.0.0.1", validation_alias=_env("SEGBOT_WEB_HOST"))
    web_port: int = Field(8080, ge=0, le=65535, validation_alias=_env("SEGBOT_WEB_PORT"))
    webapp_auth_max_age_s: float = Field(86400, gt=0, validation_alias=_env("SEGBOT_WEBAPP_AUTH_MAX_AGE_S"))
    web_max_body_kb: int = Field(4096, gt=0, validation_alias=_env("SEGBOT_WEB_MAX_BODY_KB"))
    # Storage and queue
    data_dir: Path = Field(default_factory=default_data_dir, validation_alias=_env("SEGBOT_DATA_DIR"))
    # File store: empty = the local folder files/ in the data dir (or an NFS mount there);
    # s3://bucket/prefix = an S3-compatible object store (MinIO, AWS, Ceph) with a local cache.
    store_url: str | None = Field(None, validation_alias=_env("SEGBOT_STORE_URL"))
    store_endpoint_url: str | None = Field(None, validation_alias=_env("SEGBOT_STORE_ENDPOINT_URL"))
    store_access_key: str | None = Field(None, validation_alias=_env("SEGBOT_STORE_ACCESS_KEY"))
    store_secret_key: SecretStr | None = Field(None, validation_alias=_env("SEGBOT_STORE_SECRET_KEY"))
    store_region: str | None = Field(None, validation_alias=_env("SEGBOT_STORE_REGION"))
    store_cache_dir_raw: Path | None = Field(None, validation_alias=_env("SEGBOT_STORE_CACHE_DIR"))
    database_url_raw: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    broker_url_raw: str | None = Field(None, validation_alias=_env("SEGBOT_BROKER_URL", "BROKER_URL"))
    device: str = Field("cpu", validation_alias=_env("SEGBOT_DEVICE"))
    # CPU threads of a training job: 0 = every idle core, re-checked while it runs; N = exactly N
    # (OMP_NUM_THREADS, when set, wins over both)
    train_threads: int = Field(0, ge=0, le=1024, validation_alias=_env("SEGBOT_TRAIN_THREADS"))
    # Access
    access_mode: Literal["open", "allowlist"] = Field("open", validation_alias=_env("SEGBOT_ACCESS_MODE"))
    allowed_users: str = Field("", validation_alias=_env("SEGBOT_ALLOWED_USERS"))
    admins: str = Field("", validation_alias=_env("SEGBOT_ADMINS"))
    # Limits
    max_upload_mb: float = Field(20.0, gt=0, validation_alias=_env("SEGBOT_MAX_UPLOAD_MB"))
    max_image_pixels: int = Field(120_000_000, gt=0, validation_alias=_env("SEGBOT_MAX_IMAGE_PIXELS"))
    max_jobs_per_user: int = Field(5, gt=0, validation_alias=_env("SEGBOT_MAX_JOBS_PER_USER"))
    max_running_per_user: int = Field(1, gt=0, validation_alias=_env("SEGBOT_MAX_RUNNING_PER_USER"))
    daily_gpu_seconds: float = Field(4 * 3600, gt=0, validation_alias=_env("SEGBOT_DAILY_GPU_SECONDS"))
    job_max_attempts: int = Field(3, gt=0, validation_alias=_env("SEGBOT_JOB_MAX_ATTEMPTS"))
    retention_days: float = Field(30, gt=0, validation_alias=_env("SEGBOT_RETENTION_DAYS"))
    # Models
    coco_weights: Path | None = Field(None, validation_alias=_env("SEGBOT_COCO_WEIGHTS"))
    # Unset or empty: the shipped base model; "none": no base model (init auto = random weights).
    base_model: Path | None = Field(default_factory=shipped_base_model,
                                    validation_alias=_env("SEGBOT_BASE_MODEL"))
    # Logging
    log_json: bool = Field(False, validation_alias=_env("SEGBOT_LOG_JSON"))
    log_level: str = Field("INFO", validation_alias=_env("SEGBOT_LOG_LEVEL"))
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias=_env("SEGBOT_METRICS_PORT"))
    # Queue
    heartbeat_s: float = Field(10.0, gt=0, validation_alias=_env("SEGBOT_HEARTBEAT_S"))
    stale_after_s: float = Field(120.0, gt=0, validation_alias=_env("SEGBOT_STALE_AFTER_S"))
    sweep_interval_s: float = Field(30.0, gt=0, validation_alias=_env("SEGBOT_SWEEP_INTERVAL_S"))
    visibility_timeout_s: float = Field(12 * 3600, gt=0, validation_alias=_env("SEGBOT_VISIBILITY_TIMEOUT_S"))
    broker_poll_s: float = Field(0.2, gt=0, validation_alias=_env("SEGBOT_BROKER_POLL_S"))
    redis_key_prefix: str = Field("", validation_alias=_env("SEGBOT_REDIS_PREFIX"))
    db_retry_s: float = Field(60.0, ge=0, validation_alias=_env("SEGBOT_DB_RETRY_S"))
    # A worker times a few training iterations at start-up, once per machine (jobqueue/probe.py)
    speed_probe: bool = Field(True, validation_alias=_env("SEGBOT_SPEED_PROBE"))
    # Training checkpoints (resume after a worker died): every N iterations and every S seconds
    checkpoint_every_iters: int = Field(200, ge=0, validation_alias=_env("SEGBOT_CHECKPOINT_EVERY_ITERS"))
    checkpoint_every_s: float = Field(300.0, gt=0, validation_alias=_env("SEGBOT_CHECKPOINT_EVERY_S"))

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be 'cpu', 'cuda' or 'cuda:N'")

    @field_validator("base_model", mode="before")
    @classmethod
    def _base_model(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in NO_BASE_MODEL:
            return None
        if isinstance(value, str) and not value.strip():
            return shipped_base_model()
        return value

    @field_validator("telegram_api_base_url", "telegram_api_base_file_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (the token is appended to it)")
        return value

    @field_validator("webapp_url")
    @classmethod
    def _webapp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError("must be an https:// URL (Telegram opens Mini Apps only over HTTPS)")
        if not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be a base URL like https://segbot.example.org (no query, no #)")
        return value

    @field_validator("database_url_raw")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if value.startswith("postgres:") or value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith("s3://") or len(value) <= 5 or value[5] == "/":
            raise ValueError("must be s3://bucket/prefix (or empty for the local folder)")
        return value.rstrip("/")

    @field_validator("broker_url_raw")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is None or value in ("", "embedded"):
            return None
        if not value.startswith(("redis://", "rediss://", "amqp://", "sqla+")):
            raise ValueError("must be redis://, amqp://, sqla+... or 'embedded'")
        return value

    # Derived values

    @property
    def database_url(self) -> str:
        return self.database_url_raw or f"sqlite:///{self.data_dir / 'segbot.db'}"

    @property
    def broker_url(self) -> str:
        """Redis/AMQP when configured; else kombu's SQLAlchemy transport over a SQLite file."""
        return self.broker_url_raw or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def broker_is_embedded(self) -> bool:
        return self.broker_url_raw is None

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def store_cache_dir(self) -> Path:
        """Local copies of an object store's bundles and checkpoints: where the local store lives,
        so model paths (relative to the data dir) mean the same with either backend."""
        return self.store_cache_dir_raw or self.files_dir

    @property
    def token(self) -> str:
        if self.telegram_bot_token is None or not self.telegram_bot_token.get_secret_value().strip():
            raise SettingsError("setting TELEGRAM_BOT_TOKEN: missing; get one from @BotFather and set it")
        token = self.telegram_bot_token.get_secret_value().strip()
        if ":" not in token:
            raise SettingsError("setting TELEGRAM_BOT_TOKEN: does not look like a bot token (id:secret)")
        return token

    def _id_set(self, raw: str) -> set[str]:
        return {item.strip().lstrip("@").lower() for item in raw.split(",") if item.strip()}

    @property
    def admin_ids(self) -> set[str]:
        return self._id_set(self.admins)

    @property
    def allowed_ids(self) -> set[str]:
        return self._id_set(self.allowed_users)

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)


_ENV_NAMES = {
    name: (field.validation_alias.choices[0] if isinstance(field.validation_alias, AliasChoices) else name)
    for name, field in Settings.model_fields.items()
}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first.get("loc") else "?"
    name = _ENV_NAMES.get(field, field.upper())
    reason = first.get("msg", "invalid").removeprefix("Value error, ")
    return f"setting {name}: {reason}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise SettingsError with one line on any problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
