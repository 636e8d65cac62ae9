"""Settings from the environment and `.env` (pydantic-settings); `.env.example` documents every one."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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

    results_per_answer: int = Field(default=3, validation_alias="BRIEFBOT_RESULTS_PER_ANSWER")
    min_relevance: float = Field(default=0.35, validation_alias="BRIEFBOT_MIN_RELEVANCE")
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

    log_level: str = Field(default="INFO", validation_alias="BRIEFBOT_LOG_LEVEL")

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL when set, otherwise SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'briefbot.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
