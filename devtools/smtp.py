"""A real SMTP server (aiosmtpd) on a free loopback port that records what it receives.

Tests read ``messages``; ``make dev`` also writes each message to a folder (``.run/mail/``).
Faults a test can ask for: answer the next RCPTs with a given code (4xx transient, 5xx
permanent), or hold a RCPT reply for a while (so a worker can be killed mid-send, before the
message is accepted).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devtools.services import LOOPBACK, free_port


@dataclass
class SmtpSink:
    """Start with :meth:`start`; ``url`` is what ALGOEDGE_SMTP_URL should say."""

    folder: Path | None = None
    port: int = 0
    #: Called with each message and the file it was written to (``make dev`` prints a line).
    on_message: Callable[[EmailMessage, Path | None], None] | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rcpt_codes: list[str] = field(default_factory=list)
    _hold_rcpt_seconds: float = 0.0
    rcpt_seen: threading.Event = field(default_factory=threading.Event)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{LOOPBACK}:{self.port}"

    def start(self) -> SmtpSink:
        self.port = self.port or free_port()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self), hostname=LOOPBACK, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse_next(self, *replies: str) -> None:
        """Answer the next RCPT commands with these replies, e.g. ``"451 4.3.0 try later"``."""
        with self._lock:
            self._rcpt_codes.extend(replies)

    def hold_rcpt(self, seconds: float) -> None:
        self._hold_rcpt_seconds = seconds
        self.rcpt_seen.clear()

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, *, timeout: float) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.received()

    def _record(self, raw: bytes) -> None:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            number = len(self.messages)
        path = None
        if self.folder is not None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.folder / f"{stamp}-{number:04d}.eml"
            path.write_bytes(raw)
        if self.on_message is not None:
            self.on_message(message, path)

    def _next_rcpt_reply(self) -> str | None:
        with self._lock:
            return self._rcpt_codes.pop(0) if self._rcpt_codes else None


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.sink.rcpt_seen.set()
        if self.sink._hold_rcpt_seconds:
            await asyncio.sleep(self.sink._hold_rcpt_seconds)
        reply = self.sink._next_rcpt_reply()
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.sink._record(content)
        return "250 Message accepted for delivery"
