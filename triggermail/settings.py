"""Process settings, read once from the environment at start and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".triggermail")


class Settings(BaseSettings):
    """Everything a triggermail process needs besides Temporal's own connection.

    Temporal's address, namespace, API key and TLS come from the standard
    ``TEMPORAL_*`` variables through ``temporalio.envconfig``, not from here.
    """

    model_config = SettingsConfigDict(env_prefix="TRIGGERMAIL_", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR}/triggermail.db"
    """SQLAlchemy URL of the store; PostgreSQL in production."""
    journeys: Path | None = None
    """Journeys TOML; the packaged defaults when unset."""
    mail_transport: Literal["outbox", "sendgrid"] = "outbox"
    """Where e-mails go: ``.eml`` files in the outbox, or SendGrid."""
    outbox_dir: Path = DEFAULT_DATA_DIR / "outbox"
    sendgrid_api_key: SecretStr | None = Field(default=None, validation_alias="SENDGRID_API_KEY")
    sendgrid_host: str = "https://api.sendgrid.com"
    """Base URL of SendGrid's API; tests point it at a fake on loopback."""
    sendgrid_timeout_s: float = 10.0
    write_key: SecretStr | None = None
    """Segment write key that the HTTP intake accepts (Basic auth user name)."""
    admin_key: SecretStr | None = None
    secret: SecretStr | None = None
    """HMAC secret for signed links (unsubscribe). Required with ``sendgrid``: without it
    the worker and the API refuse to start, since every link would be forgeable."""
    public_url: str = "http://localhost:8000"
    """The API's public base URL, as customers' mail clients reach it (unsubscribe links)."""
    sendgrid_webhook_public_key: str | None = None
    """SendGrid's Event Webhook verification key (base64 DER, as SendGrid shows it);
    ``POST /webhooks/sendgrid`` refuses every request without it."""
    task_queue: str = "triggermail"
    metrics_address: str = "127.0.0.1:9464"
    """Where the worker serves Prometheus metrics (Temporal SDK's and the journeys'); empty: off.
    Loopback unless set: a scraper on another host is a deployment's choice to make."""
    activity_threads: int = 16
    """Threads running activities (the sends) in one worker process."""
    workflow_cache: int = 10_000
    """Journeys one worker process keeps in memory while they sleep (Temporal's sticky
    cache). One woken from outside it is first replayed from its history, which costs the
    worker and the server as much as a step; each kept costs the worker about 100 KB of
    memory (10,000 asleep: a worker of about 1.1 GB)."""
    sends_per_second: float = 50.0
    """E-mails handed to the provider per second across all workers (Temporal enforces it on
    the send task queue); keep it under the SendGrid plan's limit. 0: no limit."""
