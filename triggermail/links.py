"""Signed links: what the worker puts in e-mails and the API verifies.

A token is ``<send id>.<HMAC-SHA256>``: it names the e-mail it came in (an opaque
ledger id, never an address), and only the holder of ``TRIGGERMAIL_SECRET`` can make
one, so nobody can unsubscribe someone else by guessing ids. Each kind of link signs
with its own purpose prefix: a survey link's token never unsubscribes anyone, nor the
other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from triggermail.settings import Settings

DEV_SECRET = b"triggermail-development-secret-never-in-production"
"""Signs links with the local outbox when no secret is set: those mails never leave the
machine, and a new developer needs nothing set up."""
_PURPOSE = b"unsubscribe\x00"
_SURVEY = b"survey\x00"
_SEND_ID = re.compile(r"^[0-9a-f]{32}$")


class SecretMissing(Exception):
    """Real e-mail (SendGrid) without ``TRIGGERMAIL_SECRET``: every link would be forgeable."""


def signing_secret(settings: Settings) -> bytes:
    """The key for unsubscribe links.

    Raises:
        SecretMissing: with the SendGrid transport and no ``TRIGGERMAIL_SECRET``.
    """
    value = settings.secret.get_secret_value() if settings.secret else ""
    if value:
        return value.encode()
    if settings.mail_transport == "sendgrid":
        raise SecretMissing(
            "TRIGGERMAIL_MAIL_TRANSPORT=sendgrid needs TRIGGERMAIL_SECRET (a long random "
            "string) to sign unsubscribe links; e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    return DEV_SECRET


class UnsubscribeLinks:
    """Makes and checks the one-click unsubscribe link of each e-mail."""

    def __init__(self, *, secret: bytes, public_url: str) -> None:
        self._secret = secret
        self.public_url = public_url.rstrip("/")

    def _mac(self, send_id: str, purpose: bytes = _PURPOSE) -> str:
        digest = hmac.new(self._secret, purpose + send_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def token(self, send_id: str) -> str:
        return f"{send_id}.{self._mac(send_id)}"

    def url(self, send_id: str) -> str:
        """Absolute, on the API's public URL: mail clients POST to it for one-click."""
        return f"{self.public_url}/unsubscribe/{self.token(send_id)}"

    def verify(self, token: str, *, purpose: bytes = _PURPOSE) -> str | None:
        """The send id a genuine token names; None for a forged, altered or cut one."""
        send_id, _, mac = token.partition(".")
        if not _SEND_ID.match(send_id) or not mac:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(send_id, purpose).encode()):
            return None
        return send_id

    def survey_url(self, send_id: str, answer: str) -> str:
        """A reactivation survey's answer link: one per answer, the token names the e-mail."""
        return f"{self.public_url}/survey/{send_id}.{self._mac(send_id, _SURVEY)}/{answer}"

    def verify_survey(self, token: str) -> str | None:
        """The send id a genuine survey token names; None otherwise (an unsubscribe token
        included)."""
        return self.verify(token, purpose=_SURVEY)
