"""Shared fixtures: a local arXiv API server, a local SMTP server, reference papers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from arxiv_server import ArxivServer, RecordedPaper
from reference import load_reference

SMTP_HOST = "127.0.0.1"

# An SMTP reply: a 4xx or 5xx code, then a space and the text.
_REJECT_REPLY_PATTERN = re.compile(r"[45]\d\d [^\r\n]*")


@dataclass(frozen=True)
class ReceivedMessage:
    """One message that the SMTP server accepted.

    `data` is the DATA content exactly as received, with CRLF line endings.
    `message` is parsed from it after converting CRLF to LF, so text parts
    read back with the "\n" line endings that the sender wrote.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    # The client's (address, port): one value per SMTP connection.
    peer: tuple[str, int]
    message: EmailMessage
    data: bytes


class RecordingHandler:
    """aiosmtpd handler that stores every accepted message.

    Recipients registered with `reject` get the registered reply to RCPT TO.
    Addresses match case-insensitively.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._rejections: dict[str, str] = {}
        # Seconds to wait before accepting each message, to make a batch slow.
        self.delay_s = 0.0

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def reject(self, address: str, reply: str) -> None:
        if not _REJECT_REPLY_PATTERN.fullmatch(reply):
            raise ValueError(
                f"invalid SMTP reply {reply!r}: expected a 4xx or 5xx code and "
                "text, such as '550 5.1.1 mailbox unavailable'"
            )
        with self._lock:
            self._rejections[address.lower()] = reply

    def accept(self, address: str) -> None:
        with self._lock:
            self._rejections.pop(address.lower(), None)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self._lock:
            rejection = self._rejections.get(address.lower())
        if rejection is not None:
            return rejection
        # A handle_RCPT hook replaces aiosmtpd's default, which records the
        # recipient, so the hook has to record it itself.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        data = envelope.original_content or b""
        message = email.message_from_bytes(
            data.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        received = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            peer=tuple(session.peer),
            message=cast(EmailMessage, message),
            data=data,
        )
        with self._lock:
            self._messages.append(received)
        return "250 Message accepted for delivery"


class _FreePortController(Controller):
    """Controller that listens on a port that the OS picks.

    aiosmtpd 1.4.6 accepts port=0 for binding, but start() then connects to
    port 0 to check the server and fails with ConnectionRefusedError. This
    subclass reads the bound port before that check.
    """

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    """A running local SMTP server and the messages it received."""

    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Copy of the accepted messages, oldest first."""
        return self.handler.messages

    def reject(self, address: str, reply: str) -> None:
        """Reject RCPT TO for this address with `reply`, such as '550 5.1.1 ...'."""
        self.handler.reject(address, reply)

    def accept(self, address: str) -> None:
        """Accept RCPT TO for this address again after `reject`."""
        self.handler.accept(address)


@pytest.fixture
def arxiv_server() -> Iterator[ArxivServer]:
    """Running ArxivServer with no registered search results."""
    with ArxivServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Running aiosmtpd server on 127.0.0.1 that records what it receives."""
    handler = RecordingHandler()
    # server_hostname skips aiosmtpd's socket.getfqdn() lookup for the banner.
    controller = _FreePortController(
        handler, hostname=SMTP_HOST, port=0, server_hostname="localhost"
    )
    try:
        controller.start()
    except BaseException:
        controller.stop(no_assert=True)
        raise
    try:
        yield SmtpServer(host=SMTP_HOST, port=controller.port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def reference_papers() -> dict[str, list[RecordedPaper]]:
    """Papers of tests/data/daily-papers-README.md, keyword → papers in page order."""
    return load_reference()
