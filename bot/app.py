"""The application object: settings, corpus and service for one data directory, built in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from bot.corpus import Corpus
from bot.service import BriefingService
from bot.settings import Settings
from index.embeddings import Encoder

if TYPE_CHECKING:
    from bot.feeds import FeedService
    from bot.ops import BotMetrics
    from bot.subscriptions import DigestService

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass
class Briefbot:
    settings: Settings
    corpus: Corpus
    service: BriefingService

    @classmethod
    def open(cls, settings: Settings, encoder: Encoder | None = None, sync_index: bool = True,
             writer: bool = False, publish: bool = False) -> "Briefbot":
        """Open the data directory and bring the index into agreement with the database.

        `writer`: this process will ingest (it publishes snapshots once a worker does); `publish`: it is the
        worker. Anything else follows the published snapshots when there are any (Corpus.choose_role)."""
        # private when we create it: the database inside holds every chat's questions (an existing one is kept as is)
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        corpus = Corpus(settings, encoder)
        corpus.choose_role(writer=writer, publish=publish)
        if sync_index:
            corpus.open()
        return cls(settings, corpus, BriefingService(corpus, settings))

    def close(self) -> None:
        """Stop background work (watching for index snapshots)."""
        self.corpus.close()

    @cached_property
    def metrics(self) -> "BotMetrics":
        """Prometheus metrics of this application, in its own registry (bot/ops.py)."""
        from bot.ops import BotMetrics

        return BotMetrics(self.corpus)

    @cached_property
    def digests(self) -> "DigestService":
        """Daily digests: subscriptions, schedule and composition over the same corpus."""
        from bot.subscriptions import DigestService

        return DigestService(self.corpus, self.settings)

    @cached_property
    def feeds(self) -> "FeedService":
        """RSS/Atom feeds and web pages: following, polling and reading them safely, into the same corpus."""
        from bot.feeds import FeedService

        return FeedService(self.corpus, self.settings)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "sentence_transformers", "transformers", "faiss", "urllib3", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


# --- the bot token never reaches a log or an error message --------------------------------------------------------
REDACTED = "<token>"
_TRACEBACKS = logging.Formatter()


def redact(text: str, token: str | None) -> str:
    """`text` with the bot token replaced, and its secret half too wherever it appears on its own."""
    if not token or not text:
        return text
    text = text.replace(token, REDACTED)
    _, _, secret = token.partition(":")
    if len(secret) >= 8:
        text = text.replace(secret, REDACTED)
    return text


class RedactToken(logging.Filter):
    """Whatever a library logs (a request URL, an exception carrying one, a traceback), the token never reaches
    the log: the message, its arguments, the formatted traceback and the stack are redacted."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call is logging's to report, not ours
            return True
        clean = redact(message, self.token)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)  # handlers reuse it as formatted here
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.token)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.token)
        return True


def redact_token_in_logs(token: str | None) -> None:
    """Put a RedactToken on every handler of the root logger (and on logging's last-resort handler)."""
    if not token:
        return
    handlers = list(logging.getLogger().handlers) + ([logging.lastResort] if logging.lastResort else [])
    for handler in handlers:
        if not any(isinstance(f, RedactToken) and f.token == token for f in handler.filters):
            handler.addFilter(RedactToken(token))
