"""Settings from the environment and `.env` (pydantic-settings); `.env.example` documents every one."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can configure. Command-line flags override these."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), validation_alias="BRIEFBOT_DATA_DIR")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")

    embedding_model: str = Field(default="", validation_alias="BRIEFBOT_EMBEDDING_MODEL")
    allow_model_download: bool = Field(default=False, validation_alias="BRIEFBOT_ALLOW_MODEL_DOWNLOAD")
    embedding_batch_size: int = Field(default=32, validation_alias="BRIEFBOT_EMBEDDING_BATCH_SIZE")
    torch_threads: int = Field(default=0, validation_alias="BRIEFBOT_TORCH_THREADS")
    encoder: Literal["auto", "onnx-int8", "onnx-fp32", "torch"] = Field(default="auto", validation_alias="BRIEFBOT_ENCODER")
    encoder_threads: int = Field(default=0, ge=0, validation_alias="BRIEFBOT_ENCODER_THREADS")
    encoder_cache_dir: Path | None = Field(default=None, validation_alias="BRIEFBOT_MODELS_DIR")
    highlight_encoder: Literal["auto", "same"] = Field(default="auto", validation_alias="BRIEFBOT_HIGHLIGHT_ENCODER")

    results_per_answer: int = Field(default=3, validation_alias="BRIEFBOT_RESULTS_PER_ANSWER")
    min_relevance: float = Field(default=0.66, validation_alias="BRIEFBOT_MIN_RELEVANCE")
    max_question_chars: int = Field(default=1000, validation_alias="BRIEFBOT_MAX_QUESTION_CHARS")
    passage_max_words: int = Field(default=80, validation_alias="BRIEFBOT_PASSAGE_MAX_WORDS")
    conversation_ttl_minutes: int = Field(default=60, validation_alias="BRIEFBOT_CONVERSATION_TTL_MINUTES")

    telegram_bot_token: str | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_api_base_url: str | None = Field(default=None, validation_alias="TELEGRAM_API_BASE_URL")
    webhook_url: str | None = Field(default=None, validation_alias="WEBHOOK_URL")
    webhook_secret: str | None = Field(default=None, validation_alias="WEBHOOK_SECRET")
    webhook_listen: str = Field(default="0.0.0.0", validation_alias="WEBHOOK_LISTEN")
    webhook_port: int = Field(default=8443, validation_alias="WEBHOOK_PORT")
    questions_per_minute: int = Field(default=20, validation_alias="BRIEFBOT_QUESTIONS_PER_MINUTE")

    digest_time: str = Field(default="08:00", validation_alias="BRIEFBOT_DIGEST_TIME")
    digest_timezone: str = Field(default="UTC", validation_alias="BRIEFBOT_DIGEST_TIMEZONE")
    digest_stories: int = Field(default=6, ge=5, le=8, validation_alias="BRIEFBOT_DIGEST_STORIES")
    digest_max_topics: int = Field(default=10, ge=1, le=50, validation_alias="BRIEFBOT_DIGEST_MAX_TOPICS")
    digest_topic_min_similarity: float = Field(default=0.35, validation_alias="BRIEFBOT_DIGEST_TOPIC_MIN_SIMILARITY")
    digest_cluster_similarity: float = Field(default=0.6, validation_alias="BRIEFBOT_DIGEST_CLUSTER_SIMILARITY")
    digest_max_articles: int = Field(default=3000, validation_alias="BRIEFBOT_DIGEST_MAX_ARTICLES")
    digest_poll_seconds: float = Field(default=60.0, gt=0, validation_alias="BRIEFBOT_DIGEST_POLL_SECONDS")
    digest_messages_per_second: float = Field(default=20.0, gt=0, validation_alias="BRIEFBOT_DIGEST_MESSAGES_PER_SECOND")
    digest_send_concurrency: int = Field(default=8, ge=1, validation_alias="BRIEFBOT_DIGEST_SEND_CONCURRENCY")
    digest_max_attempts: int = Field(default=5, ge=1, validation_alias="BRIEFBOT_DIGEST_MAX_ATTEMPTS")
    fake_now: str | None = Field(default=None, validation_alias="BRIEFBOT_FAKE_NOW")
    # Replicas (several `briefbot run` on one database): how long a claim on a subscriber or delivery outlives a
    # process that stopped renewing it, and this process's name (a restarted replica takes back its own at once).
    digest_lease_seconds: float = Field(default=60.0, gt=0, validation_alias="BRIEFBOT_DIGEST_LEASE_SECONDS")
    replica_id: str | None = Field(default=None, validation_alias="BRIEFBOT_REPLICA_ID")

    log_level: str = Field(default="INFO", validation_alias="BRIEFBOT_LOG_LEVEL")

    # --- running at scale: index snapshots, the worker, health and metrics (bot/snapshots.py, bot/ops.py) ---
    index_snapshots: Literal["auto", "follow", "off"] = Field(default="auto", validation_alias="BRIEFBOT_INDEX_SNAPSHOTS")
    snapshot_poll_seconds: float = Field(default=5.0, gt=0, validation_alias="BRIEFBOT_SNAPSHOT_POLL_SECONDS")
    snapshot_keep: int = Field(default=3, ge=1, validation_alias="BRIEFBOT_SNAPSHOT_KEEP")
    watch: str = Field(default="", validation_alias="BRIEFBOT_WATCH")
    worker_interval_seconds: float = Field(default=10.0, gt=0, validation_alias="BRIEFBOT_WORKER_INTERVAL_SECONDS")
    ops_listen: str = Field(default="127.0.0.1", validation_alias="BRIEFBOT_OPS_LISTEN")
    ops_port: int = Field(default=9464, ge=0, le=65535, validation_alias="BRIEFBOT_OPS_PORT")

    # --- sources: feeds and web pages (bot/fetch.py, bot/feeds.py) ---
    admin_ids: str = Field(default="", validation_alias="ADMIN_IDS")
    fetch_timeout: float = Field(default=15.0, gt=0, validation_alias="BRIEFBOT_FETCH_TIMEOUT")
    fetch_max_bytes: int = Field(default=5_000_000, ge=1024, validation_alias="BRIEFBOT_FETCH_MAX_BYTES")
    fetch_max_redirects: int = Field(default=5, ge=0, le=20, validation_alias="BRIEFBOT_FETCH_MAX_REDIRECTS")
    allow_private_addresses: bool = Field(default=False, validation_alias="BRIEFBOT_ALLOW_PRIVATE_ADDRESSES")
    user_agent: str = Field(default="Briefbot/0.1 (news briefing bot; feed reader)",
                            validation_alias="BRIEFBOT_USER_AGENT")
    feed_interval_minutes: int = Field(default=30, ge=1, le=10080, validation_alias="BRIEFBOT_FEED_INTERVAL_MINUTES")
    feed_poll_seconds: float = Field(default=60.0, gt=0, validation_alias="BRIEFBOT_FEED_POLL_SECONDS")
    feed_max_entries: int = Field(default=30, ge=1, validation_alias="BRIEFBOT_FEED_MAX_ENTRIES")

    @field_validator("admin_ids")
    @classmethod
    def _admin_ids_are_numbers(cls, value: str) -> str:
        """Fail at start-up on a typo rather than silently locking every admin out."""
        for part in value.replace(";", ",").split(","):
            if part.strip() and not part.strip().lstrip("-").isdigit():
                raise ValueError(f"ADMIN_IDS must be Telegram user ids separated by commas, not {part.strip()!r}")
        return value

    @field_validator("replica_id")
    @classmethod
    def _replica_id_is_a_name(cls, value: str | None) -> str | None:
        """It becomes part of every claim's owner (at most 64 characters in the database)."""
        value = (value or "").strip()
        if not value:
            return None
        if len(value) > 40 or not re.fullmatch(r"[A-Za-z0-9._:@-]+", value):
            raise ValueError("BRIEFBOT_REPLICA_ID: at most 40 letters, digits and . _ : @ -")
        return value

    @property
    def admin_id_set(self) -> frozenset[int]:
        """ADMIN_IDS as numbers: the users who may add and remove feeds in Telegram."""
        return frozenset(int(p) for p in self.admin_ids.replace(";", ",").split(",") if p.strip())

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL when set, otherwise SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'briefbot.db').resolve()}"

    @property
    def watch_dirs(self) -> list[Path]:
        """BRIEFBOT_WATCH: the folders `briefbot worker` ingests from, separated by commas or the path separator."""
        return [Path(p.strip()) for p in re.split(rf"[,{re.escape(os.pathsep)}]", self.watch) if p.strip()]

    @property
    def replica_name(self) -> str:
        """BRIEFBOT_REPLICA_ID, or this host and data directory: stable across restarts of the same replica."""
        if self.replica_id:
            return self.replica_id
        where = hashlib.sha1(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        return f"{socket.gethostname()[:28]}-{where}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def models_dir(self) -> Path:
        """Exported ONNX models (rebuilt from the packaged model when missing); several data dirs may share one."""
        return self.encoder_cache_dir or self.data_dir / "models"
