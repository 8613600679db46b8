"""Where rendered e-mails go: the local outbox (default) or SendGrid.

A transport sorts every failure into one of three kinds, because the send
activity must never mail anyone twice:

* :class:`RetryableSendError` — the provider certainly did not take the e-mail
  (429, 5xx, the request never fully left): try again later.
* :class:`PermanentSendError` — it never will (other 4xx): record and move on.
* :class:`AmbiguousSendError` — the request left and no answer came back (connection
  dropped, read timeout): the provider may have it, so it is not sent again.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Protocol

import python_http_client.exceptions as sg_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Content,
    CustomArg,
    Email,
    Header,
    Mail,
    MimeType,
    To,
)


class RetryableSendError(Exception):
    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSendError(Exception):
    pass


class AmbiguousSendError(Exception):
    pass


@dataclass(frozen=True)
class OutgoingEmail:
    send_id: str
    """Our opaque ledger id: the provider's ``custom_args`` carry it back in webhooks."""
    to_email: str
    to_name: str | None
    from_email: str
    from_name: str | None
    subject: str
    html: str
    text: str
    date: datetime
    headers: dict[str, str] = field(default_factory=dict)


class MailTransport(Protocol):
    idempotent: bool
    """True when sending the same ``send_id`` twice delivers one e-mail."""

    def send(self, email: OutgoingEmail) -> str:
        """Hand the e-mail over; returns the provider's message id."""
        ...


class OutboxTransport:
    """Writes each e-mail as an ``.eml`` file named by its send id (development and demos)."""

    idempotent = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, email: OutgoingEmail) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        message = EmailMessage()
        message["From"] = formataddr((email.from_name or "", email.from_email))
        message["To"] = formataddr((email.to_name or "", email.to_email))
        message["Subject"] = email.subject
        message["Date"] = format_datetime(email.date)
        message["Message-ID"] = make_msgid(idstring=email.send_id, domain="triggermail.local")
        message["X-Triggermail-Send-Id"] = email.send_id
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        target = self.directory / f"{email.send_id}.eml"
        partial = target.with_suffix(".eml.partial")
        # Headers unfolded up to RFC 5322's 998: the default 78 folds a long
        # List-Unsubscribe URL into RFC 2047 encoded-words no mail client reads as a URL.
        partial.write_bytes(message.as_bytes(policy=message.policy.clone(max_line_length=998)))
        # A rename is atomic: a crash leaves no half e-mail, a retry overwrites the same file.
        os.replace(partial, target)
        return f"outbox-{email.send_id}"


class SendGridTransport:
    """SendGrid's v3 Mail Send through the sendgrid library, with an explicit timeout."""

    idempotent = False

    def __init__(self, *, api_key: str, host: str, timeout_s: float) -> None:
        self.client = SendGridAPIClient(api_key=api_key, host=host)
        # The library's HTTP client has no timeout unless one is set on it.
        self.client.client.timeout = timeout_s

    def send(self, email: OutgoingEmail) -> str:
        mail = Mail(
            from_email=Email(email.from_email, email.from_name),
            to_emails=To(email.to_email, email.to_name),
            subject=email.subject,
        )
        mail.add_content(Content(MimeType.text, email.text))
        mail.add_content(Content(MimeType.html, email.html))
        mail.add_custom_arg(CustomArg("send_id", email.send_id))
        for name, value in email.headers.items():
            mail.add_header(Header(name, value))
        try:
            response = self.client.send(mail)
        except sg_errors.HTTPError as err:
            raise _classify(err) from err
        except urllib.error.URLError as err:
            # urllib wraps only errors raised while connecting or sending the request:
            # the provider cannot have processed a request it did not fully receive.
            raise RetryableSendError(f"SendGrid unreachable: {err.reason}") from err
        except (OSError, http.client.HTTPException) as err:
            # Raised while waiting for the answer: the request had left.
            raise AmbiguousSendError(f"no answer from SendGrid after sending: {err!r}") from err
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        return headers.get("x-message-id", "")


def _classify(err: sg_errors.HTTPError) -> Exception:
    status = int(getattr(err, "status_code", 0) or 0)
    body = err.body.decode(errors="replace") if isinstance(err.body, bytes) else str(err.body)
    if status == 429:
        headers = {k.lower(): v for k, v in dict(err.headers or {}).items()}
        return RetryableSendError(
            "SendGrid rate limit (429)", retry_after=_reset_delay(headers.get("x-ratelimit-reset"))
        )
    if status >= 500:
        return RetryableSendError(f"SendGrid {status}: {body[:500]}")
    return PermanentSendError(f"SendGrid refused the e-mail ({status}): {body[:500]}")


def _reset_delay(reset: str | None) -> timedelta | None:
    """SendGrid's ``X-RateLimit-Reset`` is the Unix time at which the limit resets."""
    if not reset:
        return None
    try:
        seconds = float(reset) - time.time()
    except ValueError:
        return None
    return timedelta(seconds=min(max(seconds, 1.0), 3600.0))
