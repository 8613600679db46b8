"""A fake SendGrid v3 API on loopback: the one side effect tests replace.

Each request takes the next scripted behaviour (202 when the script is empty), and
every e-mail SendGrid would have delivered — answered 202 or accepted and then cut
off — is kept in ``accepted``, which is what the customer's inbox would hold.
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


ACCEPT = Reply()
DROP = Reply(drop_after_accept=True)


def rate_limited(reset_in_s: float = 2.0) -> Reply:
    return Reply(
        status=429,
        headers={"X-RateLimit-Reset": str(int(time.time() + reset_in_s))},
        body='{"errors":[{"message":"too many requests"}]}',
    )


def error(status: int, message: str = "error") -> Reply:
    return Reply(status=status, body=json.dumps({"errors": [{"message": message, "field": None}]}))


class FakeSendGrid:
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.accepted: list[dict[str, Any]] = []
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    reply = fake.script.popleft() if fake.script else ACCEPT
                    fake.requests.append((reply.status, body))
                    if reply.status == 202 or reply.drop_after_accept:
                        fake.accepted.append(body)
                    assert self.headers["Authorization"].startswith("Bearer ")
                if reply.drop_after_accept:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.status == 202:
                    self.send_header("X-Message-Id", f"sg-{len(fake.requests)}")
                payload = reply.body.encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
