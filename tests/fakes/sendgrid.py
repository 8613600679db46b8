"""A fake SendGrid v3 API on loopback: the one side effect tests replace.

Each request takes the next scripted behaviour (``default``, 202 at once unless a test
changes it, when the script is empty), and every e-mail SendGrid would have delivered —
answered 202, or taken and then cut off or left hanging — is kept in ``accepted``, which is
what the customer's inbox would hold. ``log`` keeps every request with its time and our
send id, from which the fault tests count duplicates, losses and retry storms.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    drop_after_accept: bool = False
    """Take the e-mail, then close the connection without answering."""
    delay_s: float = 0.0
    """Answer this much later: a slow SendGrid, or past the client's timeout a hanging one
    (a 202 that hangs has taken the e-mail, as SendGrid would have)."""


ACCEPT = Reply()
DROP = Reply(drop_after_accept=True)


def slow(delay_s: float) -> Reply:
    return Reply(delay_s=delay_s)


def rate_limited(reset_in_s: float = 2.0) -> Reply:
    """A 429 as SendGrid sends it: ``X-RateLimit-Reset`` is when the limit resets (Unix time)."""
    return Reply(
        status=429,
        headers={
            "X-RateLimit-Reset": str(int(time.time() + reset_in_s)),
            "Retry-After": str(max(1, round(reset_in_s))),
        },
        body='{"errors":[{"message":"too many requests"}]}',
    )


def error(status: int, message: str = "error") -> Reply:
    return Reply(status=status, body=json.dumps({"errors": [{"message": message, "field": None}]}))


@dataclass(frozen=True)
class Logged:
    """One request as the fake saw it."""

    at: float
    """``time.time()`` when it arrived."""
    send_id: str
    reply: Reply

    @property
    def taken(self) -> bool:
        """SendGrid would deliver it: answered 202, or taken before the connection was cut."""
        return self.reply.status == 202 or self.reply.drop_after_accept


class FakeSendGrid:
    def __init__(self, *, port: int = 0) -> None:
        self.script: deque[Reply] = deque()
        self.default = ACCEPT
        """What a request gets when the script is empty."""
        self.accepted: list[dict[str, Any]] = []
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self.log: list[Logged] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    reply = fake.script.popleft() if fake.script else fake.default
                    fake.requests.append((reply.status, body))
                    logged = Logged(time.time(), _send_id(body), reply)
                    fake.log.append(logged)
                    if logged.taken:
                        fake.accepted.append(body)
                    number = len(fake.requests)
                    assert self.headers["Authorization"].startswith("Bearer ")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop_after_accept:
                    self.close_connection = True
                    self.connection.close()
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.status == 202:
                        self.send_header("X-Message-Id", f"sg-{number}")
                    payload = reply.body.encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (its timeout) or died (a killed worker)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeSendGrid:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def taken(self) -> list[str]:
        """Send ids of every e-mail SendGrid would deliver, one per copy, in arrival order."""
        with self.lock:
            return [entry.send_id for entry in self.log if entry.taken]

    def inbox(self) -> list[dict[str, str]]:
        """What recipients got: recipient, subject, plain text and our send id, in order."""
        out = []
        with self.lock:
            for body in self.accepted:
                content = {c["type"]: c["value"] for c in body["content"]}
                personalization = body["personalizations"][0]
                out.append(
                    {
                        "to": personalization["to"][0]["email"],
                        "subject": body.get("subject") or personalization.get("subject", ""),
                        "text": content.get("text/plain", ""),
                        "send_id": body.get("custom_args", {}).get("send_id")
                        or personalization.get("custom_args", {}).get("send_id", ""),
                    }
                )
        return out


def _send_id(body: dict[str, Any]) -> str:
    personalization = (body.get("personalizations") or [{}])[0]
    return str(
        body.get("custom_args", {}).get("send_id")
        or personalization.get("custom_args", {}).get("send_id", "")
    )
