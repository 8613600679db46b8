"""The development outbox in a browser: ``/outbox`` lists caught e-mails, newest first,
and shows each rendered with its headers — the window onto the ``outbox`` transport.

The outbox holds real customers' addresses when pointed at real data, so it answers
loopback clients only, unless the request carries the admin key.
"""

from __future__ import annotations

import email
import email.policy
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

SEND_ID = re.compile(r"^[0-9a-f]{32}$")

_PAGES = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#18181b}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem .6rem;
border-bottom:1px solid #e4e4e7;vertical-align:top}th{background:#f4f4f5}
iframe{width:100%;height:70vh;border:1px solid #e4e4e7}pre{white-space:pre-wrap;
background:#f4f4f5;padding:1rem}a{color:#1d4ed8}</style>"""
_LIST = _PAGES.from_string(
    "<!doctype html><title>Outbox</title>"
    + _STYLE
    + """
<h1>Outbox <small>({{ mails|length }})</small></h1>
<p>{{ directory }}</p>
<table><tr><th>date</th><th>to</th><th>subject</th></tr>
{% for m in mails %}<tr><td>{{ m.date }}</td><td>{{ m.to }}</td>
<td><a href="/outbox/{{ m.send_id }}">{{ m.subject }}</a></td></tr>
{% else %}<tr><td colspan="3">No e-mail yet.</td></tr>{% endfor %}</table>"""
)
_ONE = _PAGES.from_string(
    "<!doctype html><title>{{ subject }}</title>"
    + _STYLE
    + """
<p><a href="/outbox">← outbox</a></p><h1>{{ subject }}</h1>
<table>{% for name, value in headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
<h2>HTML</h2><iframe sandbox src="/outbox/{{ send_id }}/html"></iframe>
<h2>Text</h2><pre>{{ text }}</pre>"""
)


@dataclass(frozen=True)
class CaughtEmail:
    send_id: str
    date: datetime
    to: str
    subject: str


def outbox_router(directory: Path, *, admin_key: bytes | None) -> APIRouter:
    router = APIRouter(prefix="/outbox", tags=["development"], include_in_schema=False)

    def guard(request: Request) -> None:
        host = request.client.host if request.client else ""
        if host in ("127.0.0.1", "::1", "localhost", "testclient"):
            return
        given = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if admin_key is not None and hmac.compare_digest(given.encode(), admin_key):
            return
        raise HTTPException(403, "the outbox answers loopback clients or the admin key only")

    def load(send_id: str) -> EmailMessage:
        path = directory / f"{send_id}.eml"
        if not SEND_ID.match(send_id) or not path.is_file():
            raise HTTPException(404, f"no e-mail {send_id} in the outbox")
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @router.get("", response_class=HTMLResponse)
    def listing(request: Request) -> str:
        guard(request)
        mails = []
        for path in directory.glob("*.eml") if directory.is_dir() else []:
            message = load(path.stem) if SEND_ID.match(path.stem) else None
            if message is None:
                continue
            mails.append(
                CaughtEmail(
                    send_id=path.stem,
                    date=_date(message, path),
                    to=str(message["To"]),
                    subject=str(message["Subject"]),
                )
            )
        mails.sort(key=lambda m: m.date, reverse=True)
        return _LIST.render(mails=mails, directory=str(directory.resolve()))

    @router.get("/{send_id}", response_class=HTMLResponse)
    def one(send_id: str, request: Request) -> str:
        guard(request)
        message = load(send_id)
        text = message.get_body(preferencelist=("plain",))
        return _ONE.render(
            send_id=send_id,
            subject=str(message["Subject"]),
            headers=[(name, str(value)) for name, value in message.items()],
            text=text.get_content() if text is not None else "",
        )

    @router.get("/{send_id}/html", response_class=HTMLResponse)
    def html_part(send_id: str, request: Request) -> HTMLResponse:
        guard(request)
        part = load(send_id).get_body(preferencelist=("html",))
        # Shown in a sandboxed iframe: the e-mail's own markup, scripts never run.
        return HTMLResponse(
            part.get_content() if part is not None else "",
            headers={"Content-Security-Policy": "script-src 'none'"},
        )

    return router


def _date(message: EmailMessage, path: Path) -> datetime:
    try:
        return parsedate_to_datetime(str(message["Date"]))
    except (TypeError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
