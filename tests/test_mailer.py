"""Check mail delivery against local aiosmtpd servers.

Covers the batch connection, retries after temporary failures and dropped
connections, permanent rejections, authentication, TLS, header injection by
paper text and the outbox directory.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from conftest import SMTP_HOST, _FreePortController
from factories import make_paper

from digest.config import DigestConfig, Settings
from digest.delivery import DeliveryReport, Mail, deliver, prepare_mail
from digest.errors import DeliveryError
from digest.mailer import (
    SMTP_RETRIES,
    MailRejectedError,
    Outbox,
    SmtpTransport,
    build_message,
    check_server,
)
from digest.papers import Paper
from digest.render import Digest, Renderer, build_digest
from digest.store import Store

DAY = date(2026, 1, 8)
NOW = datetime(2026, 1, 8, 6, 0, tzinfo=UTC)
SENDER = "Daily Papers <papers@example.org>"
KEYWORD = "Video Anomaly Detection"
READERS = tuple(f"reader{number}@example.org" for number in range(1, 6))

# Base delay of the transport's exponential backoff, so that all SMTP_RETRIES
# retries of one mail wait well under a second in total.
BACKOFF_S = 0.01

USERNAME = "digest"
PASSWORD = "correct-Horse-7"

# The reply of a rule that closes the connection instead of replying.
DROP = "drop"


# A scripted SMTP server


@dataclass(frozen=True)
class AcceptedMessage:
    """One message the scripted server accepted, with the connection it came on.

    Connections are numbered from 1 in the order of their first MAIL FROM.
    """

    connection: int
    rcpt_tos: tuple[str, ...]
    is_tls: bool
    login: bytes | None
    message: EmailMessage


@dataclass
class Rule:
    """A scripted reply to RCPT TO or DATA for one recipient.

    remaining is how many more commands get the reply, or None for every one.
    """

    reply: str
    remaining: int | None


class ScriptedHandler:
    """aiosmtpd handler that fails chosen commands for chosen recipients.

    A rule for stage "RCPT" or "DATA" replies to that command for its
    recipient with an SMTP reply, or closes the connection without a reply
    when the reply is DROP. Commands with no rule left succeed, and DATA
    records the message. Addresses are compared in lower case.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: list[Session] = []
        self._rules: dict[tuple[str, str], Rule] = {}
        self._accepted: list[AcceptedMessage] = []
        self._attempts: Counter[tuple[str, str]] = Counter()

    def fail(self, stage: str, address: str, reply: str, times: int | None = 1) -> None:
        """Reply to the next `times` stage commands for address, or to all if None."""
        with self._lock:
            self._rules[stage, address.lower()] = Rule(reply, times)

    @property
    def accepted(self) -> list[AcceptedMessage]:
        """Copy of the accepted messages, oldest first."""
        with self._lock:
            return list(self._accepted)

    @property
    def connection_count(self) -> int:
        """Number of connections that sent MAIL FROM."""
        with self._lock:
            return len(self._sessions)

    def attempts(self, stage: str, address: str) -> int:
        """Return how many RCPT TO or DATA commands (stage) named address."""
        with self._lock:
            return self._attempts[stage, address.lower()]

    def _take_reply(self, stage: str, address: str) -> str | None:
        key = (stage, address.lower())
        with self._lock:
            self._attempts[key] += 1
            rule = self._rules.get(key)
            if rule is None or rule.remaining == 0:
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
            return rule.reply

    def _connection_number(self, session: Session) -> int:
        with self._lock:
            for index, known in enumerate(self._sessions):
                if known is session:
                    return index + 1
            self._sessions.append(session)
            return len(self._sessions)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self._connection_number(session)
        # A handle_MAIL hook replaces aiosmtpd's default, which records these.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._take_reply("RCPT", address)
        if reply == DROP:
            return drop_connection(server)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        reply = self._take_reply("DATA", envelope.rcpt_tos[0])
        if reply == DROP:
            return drop_connection(server)
        if reply is not None:
            return reply
        data = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert server.transport is not None
        accepted = AcceptedMessage(
            connection=self._connection_number(session),
            rcpt_tos=tuple(envelope.rcpt_tos),
            is_tls=server.transport.get_extra_info("ssl_object") is not None,
            login=login_of(session),
            message=cast(EmailMessage, message),
        )
        with self._lock:
            self._accepted.append(accepted)
        return "250 Message accepted for delivery"


def login_of(session: Session) -> bytes | None:
    """Return the username the session authenticated with, or None."""
    data = session.auth_data
    return data.login if isinstance(data, LoginPassword) else None


def drop_connection(server: SMTP) -> str:
    """Close the client's connection and return a reply it never receives."""
    assert server.transport is not None
    server.transport.close()
    return "421 4.4.2 connection closed"


@contextmanager
def running_server(handler: ScriptedHandler, **options: Any) -> Iterator[int]:
    """Run an aiosmtpd server on 127.0.0.1 with handler and yield its port.

    options go to aiosmtpd's Controller and SMTP, e.g. ssl_context or
    authenticator.
    """
    # server_hostname skips aiosmtpd's socket.getfqdn() lookup for the banner.
    controller = _FreePortController(
        handler, hostname=SMTP_HOST, port=0, server_hostname="localhost", **options
    )
    try:
        controller.start()
    except BaseException:
        controller.stop(no_assert=True)
        raise
    try:
        yield controller.port
    finally:
        controller.stop()


# Fixtures and helpers


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove DIGEST_* and SSL_CERT_* variables that Settings or ssl would read."""
    for name in list(os.environ):
        if name.startswith(("DIGEST_", "SSL_CERT_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    """One Renderer for the module, because compiling templates takes time."""
    return Renderer()


@pytest.fixture
def handler() -> ScriptedHandler:
    """A ScriptedHandler with no rules: every command succeeds."""
    return ScriptedHandler()


@pytest.fixture
def port(handler: ScriptedHandler) -> Iterator[int]:
    """Port of a plain-text SMTP server running handler."""
    with running_server(handler) as server_port:
        yield server_port


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Empty store in tmp_path/data."""
    opened = Store.open(tmp_path / "data")
    try:
        yield opened
    finally:
        opened.close()


def make_settings(port: int, tmp_path: Path, **variables: Any) -> Settings:
    """Return Settings for the local server at port, without TLS by default."""
    values: dict[str, Any] = {
        "DIGEST_SMTP_HOST": SMTP_HOST,
        "DIGEST_SMTP_PORT": port,
        "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_SMTP_TIMEOUT": 5,
        "DIGEST_DATA_DIR": tmp_path,
    }
    values.update(variables)
    return Settings(**values)


def make_config(addresses: tuple[str, ...]) -> DigestConfig:
    """Return a configuration with one keyword and one subscriber per address."""
    return DigestConfig.model_validate(
        {
            "keywords": [KEYWORD],
            "sender": SENDER,
            "subscribers": [{"email": address} for address in addresses],
        }
    )


def make_digest(papers: list[Paper]) -> Digest:
    """Return the digest of DAY with papers under KEYWORD."""
    by_id = {paper.paper_id: paper for paper in papers}
    return build_digest(DAY, [KEYWORD], {KEYWORD: list(by_id)}, by_id)


def make_mails(renderer: Renderer, addresses: tuple[str, ...] = READERS) -> list[Mail]:
    """Return one digest mail with one paper for each address, in order."""
    config = make_config(addresses)
    digest = make_digest([make_paper()])
    return [
        prepare_mail(config, subscriber, digest, renderer, NOW)
        for subscriber in config.subscribers
    ]


async def deliver_over_smtp(
    mails: list[Mail], settings: Settings, store: Store
) -> DeliveryReport:
    """Deliver mails with a short backoff, as the daily run does."""
    transport = SmtpTransport(settings, backoff_s=BACKOFF_S)
    return await deliver(mails, transport, store, DAY, lambda: NOW)


def statuses_by_email(store: Store) -> dict[str, list[str]]:
    """Return the recorded delivery statuses of DAY per address, oldest first."""
    statuses: dict[str, list[str]] = {}
    for record in store.deliveries_of(DAY):
        statuses.setdefault(record["email"], []).append(record["status"])
    return statuses


def recipients_of(accepted: list[AcceptedMessage]) -> list[str]:
    """Return the recipients of accepted messages, in arrival order."""
    return [address for message in accepted for address in message.rcpt_tos]


# One connection per batch


async def test_batch_uses_one_connection(
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    settings = make_settings(port, tmp_path)

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 5
    assert report.failures == []
    assert recipients_of(handler.accepted) == list(READERS)
    assert handler.connection_count == 1


# Temporary failures and dropped connections


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
async def test_temporary_failure_retried_once(
    stage: str,
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    handler.fail(stage, READERS[2], "451 4.3.0 try again later", times=1)
    settings = make_settings(port, tmp_path)

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 5
    assert report.failures == []
    assert recipients_of(handler.accepted) == list(READERS)
    assert handler.attempts(stage, READERS[2]) == 2
    # The mail that got 451 goes again on a new connection, and the rest follow.
    assert handler.connection_count == 2
    assert [message.connection for message in handler.accepted] == [1, 1, 2, 2, 2]
    assert statuses_by_email(store) == {address: ["sent"] for address in READERS}


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
async def test_dropped_connection_loses_no_mail(
    stage: str,
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    # At DATA the server has the whole third message but never replies, so it
    # did not take it and the client must send it again.
    handler.fail(stage, READERS[2], DROP, times=1)
    settings = make_settings(port, tmp_path)

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 5
    assert report.failures == []
    assert recipients_of(handler.accepted) == list(READERS)
    assert handler.connection_count == 2
    assert statuses_by_email(store) == {address: ["sent"] for address in READERS}


ENDLESS_FAILURE_STAGES = ["RCPT", "DATA"]


@pytest.mark.parametrize("stage", ENDLESS_FAILURE_STAGES)
async def test_endless_temporary_failure_raises(
    stage: str,
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    renderer: Renderer,
) -> None:
    handler.fail(stage, READERS[0], "451 4.3.0 try again later", times=None)
    [mail] = make_mails(renderer, READERS[:1])
    transport = SmtpTransport(make_settings(port, tmp_path), backoff_s=BACKOFF_S)

    with pytest.raises(DeliveryError) as caught:
        async with transport:
            await transport.send(mail.message)

    assert "451 4.3.0 try again later" in str(caught.value)
    assert f"giving up after {SMTP_RETRIES + 1} attempts" in str(caught.value)
    assert handler.attempts(stage, READERS[0]) == SMTP_RETRIES + 1
    assert handler.accepted == []


@pytest.mark.parametrize("stage", ENDLESS_FAILURE_STAGES)
async def test_endless_temporary_failure_leaves_pending(
    stage: str,
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    handler.fail(stage, READERS[2], "451 4.3.0 try again later", times=None)
    settings = make_settings(port, tmp_path)

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 2
    assert len(report.failures) == 1
    assert "3 mails left pending" in report.failures[0]
    assert recipients_of(handler.accepted) == list(READERS[:2])
    # deliver records nothing for the mails that the server did not accept.
    assert statuses_by_email(store) == {address: ["sent"] for address in READERS[:2]}


# Permanent rejections


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "550 5.1.1 mailbox unavailable"),
        ("DATA", "554 5.6.0 message content rejected"),
    ],
)
async def test_permanent_rejection_recorded_as_failed(
    stage: str,
    reply: str,
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    handler.fail(stage, READERS[2], reply, times=None)
    settings = make_settings(port, tmp_path)

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 4
    assert len(report.failures) == 1
    assert READERS[2] in report.failures[0]
    assert reply in report.failures[0]
    assert handler.attempts(stage, READERS[2]) == 1
    others = [address for address in READERS if address != READERS[2]]
    assert recipients_of(handler.accepted) == others
    [failed] = [r for r in store.deliveries_of(DAY) if r["email"] == READERS[2]]
    assert failed["status"] == "failed"
    assert reply in failed["error"]
    assert statuses_by_email(store) == {
        address: ["failed"] if address == READERS[2] else ["sent"]
        for address in READERS
    }


async def test_permanent_rejection_raises_mail_rejected(
    handler: ScriptedHandler, port: int, tmp_path: Path, renderer: Renderer
) -> None:
    handler.fail("RCPT", READERS[0], "550 5.1.1 mailbox unavailable", times=None)
    [mail] = make_mails(renderer, READERS[:1])
    transport = SmtpTransport(make_settings(port, tmp_path), backoff_s=BACKOFF_S)

    with pytest.raises(MailRejectedError) as caught:
        async with transport:
            await transport.send(mail.message)

    assert str(caught.value) == "rejected: 550 5.1.1 mailbox unavailable"


# Authentication


def check_credentials(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """aiosmtpd authenticator that accepts only USERNAME and PASSWORD."""
    expected = LoginPassword(USERNAME.encode(), PASSWORD.encode())
    return AuthResult(success=data == expected, handled=False, auth_data=data)


@pytest.fixture
def auth_port(handler: ScriptedHandler) -> Iterator[int]:
    """Port of a plain-text SMTP server that offers AUTH PLAIN and LOGIN."""
    # aiosmtpd offers AUTH only over TLS unless auth_require_tls is False.
    with running_server(
        handler, authenticator=check_credentials, auth_require_tls=False
    ) as server_port:
        yield server_port


async def test_correct_password_sends_mail(
    handler: ScriptedHandler,
    auth_port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    settings = make_settings(
        auth_port,
        tmp_path,
        DIGEST_SMTP_USERNAME=USERNAME,
        DIGEST_SMTP_PASSWORD=PASSWORD,
    )

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 5
    assert report.failures == []
    assert [message.login for message in handler.accepted] == [USERNAME.encode()] * 5


WRONG_CREDENTIALS = [
    pytest.param(USERNAME, "wrong-Horse-8", id="wrong password"),
    pytest.param("nobody", PASSWORD, id="unknown username"),
]


@pytest.mark.parametrize(("username", "password"), WRONG_CREDENTIALS)
async def test_wrong_credentials_raise_delivery_error(
    username: str,
    password: str,
    handler: ScriptedHandler,
    auth_port: int,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        auth_port,
        tmp_path,
        DIGEST_SMTP_USERNAME=username,
        DIGEST_SMTP_PASSWORD=password,
    )

    with pytest.raises(DeliveryError) as caught:
        await check_server(settings)

    message = str(caught.value)
    assert "authentication failed" in message
    assert "DIGEST_SMTP_USERNAME" in message
    assert "DIGEST_SMTP_PASSWORD" in message
    assert password not in message
    assert "\n" not in message


async def test_wrong_password_records_nothing(
    handler: ScriptedHandler,
    auth_port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    settings = make_settings(
        auth_port,
        tmp_path,
        DIGEST_SMTP_USERNAME=USERNAME,
        DIGEST_SMTP_PASSWORD="wrong-Horse-8",
    )

    report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert report.sent == 0
    assert len(report.failures) == 1
    assert "authentication failed" in report.failures[0]
    assert "5 mails left pending" in report.failures[0]
    assert "wrong-Horse-8" not in report.failures[0]
    assert handler.accepted == []
    assert store.deliveries_of(DAY) == []


async def test_password_reaches_no_log_or_store(
    auth_port: int,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for password in (PASSWORD, "wrong-Horse-8"):
        settings = make_settings(
            auth_port,
            tmp_path,
            DIGEST_SMTP_USERNAME=USERNAME,
            DIGEST_SMTP_PASSWORD=password,
        )
        await deliver_over_smtp(make_mails(renderer), settings, store)

        assert password not in caplog.text
        assert password not in repr(settings)
        for path in store.path.parent.iterdir():
            assert password not in path.read_text(encoding="utf-8"), path


# TLS


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    """A throwaway certificate authority for the local servers."""
    return trustme.CA()


def make_server_context(ca: trustme.CA, identity: str) -> ssl.SSLContext:
    """Return a server-side TLS context with a certificate for identity."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(identity).configure_cert(context)
    return context


@pytest.fixture
def trust_ca(
    certificate_authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trust the test CA in ssl.create_default_context(), which aiosmtplib uses."""
    path = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))


@contextmanager
def tls_server(
    handler: ScriptedHandler, security: str, context: ssl.SSLContext
) -> Iterator[int]:
    """Run a server that requires STARTTLS or uses implicit TLS, and yield the port."""
    if security == "starttls":
        options = {"tls_context": context, "require_starttls": True}
    else:
        options = {"ssl_context": context}
    with running_server(handler, **options) as server_port:
        yield server_port


@pytest.mark.parametrize(
    ("security", "identity", "is_ca_trusted"),
    [
        pytest.param("starttls", SMTP_HOST, False, id="starttls-untrusted-ca"),
        pytest.param("starttls", "mail.example.org", True, id="starttls-other-host"),
        pytest.param("tls", SMTP_HOST, False, id="tls-untrusted-ca"),
        pytest.param(
            "tls",
            "mail.example.org",
            True,
            id="tls-other-host",
        ),
    ],
)
async def test_unverified_certificate_is_reported(
    security: str,
    identity: str,
    is_ca_trusted: bool,
    handler: ScriptedHandler,
    certificate_authority: trustme.CA,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    renderer: Renderer,
) -> None:
    if is_ca_trusted:
        request.getfixturevalue("trust_ca")
    context = make_server_context(certificate_authority, identity)
    [mail] = make_mails(renderer, READERS[:1])

    with tls_server(handler, security, context) as server_port:
        settings = make_settings(server_port, tmp_path, DIGEST_SMTP_SECURITY=security)
        transport = SmtpTransport(settings, backoff_s=BACKOFF_S)
        with pytest.raises(DeliveryError) as sending:
            async with transport:
                await transport.send(mail.message)
        with pytest.raises(DeliveryError) as checking:
            await check_server(settings)

    assert handler.accepted == []
    for caught in (sending, checking):
        message = str(caught.value)
        assert "\n" not in message
        assert "certificate" in message
        assert "verif" in message
        # aiosmtplib's SMTPConnectError prefix, which repeats host and port
        # and presents the certificate problem as a connection error.
        assert "Error connecting to" not in message


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_trusted_certificate_delivers_mail(
    security: str,
    handler: ScriptedHandler,
    certificate_authority: trustme.CA,
    trust_ca: None,
    tmp_path: Path,
    store: Store,
    renderer: Renderer,
) -> None:
    context = make_server_context(certificate_authority, SMTP_HOST)

    with tls_server(handler, security, context) as server_port:
        settings = make_settings(server_port, tmp_path, DIGEST_SMTP_SECURITY=security)
        description = await check_server(settings)
        report = await deliver_over_smtp(make_mails(renderer), settings, store)

    assert description == f"mail server {SMTP_HOST}:{server_port}"
    assert report.sent == 5
    assert report.failures == []
    assert recipients_of(handler.accepted) == list(READERS)
    assert all(message.is_tls for message in handler.accepted)


# Header injection


INJECTED_FIELDS = [
    ("title", "x\r\nBcc: evil@example.org"),
    ("comment", "12 pages\r\nBcc: evil@example.org\r\n\r\nbody"),
    ("summary", "We study things.\nBcc: evil@example.org"),
    ("authors", ("Ada Lovelace\r\nBcc: evil@example.org",)),
]


@pytest.mark.parametrize(("field", "value"), INJECTED_FIELDS)
async def test_paper_text_cannot_add_headers(
    field: str,
    value: Any,
    handler: ScriptedHandler,
    port: int,
    tmp_path: Path,
    renderer: Renderer,
) -> None:
    config = make_config(READERS[:1])
    digest = make_digest([make_paper(**{field: value})])
    message = build_message(config, config.subscribers[0], digest, renderer, NOW)
    transport = SmtpTransport(make_settings(port, tmp_path), backoff_s=BACKOFF_S)

    async with transport:
        await transport.send(message)

    [received] = handler.accepted
    assert received.rcpt_tos == (READERS[0],)
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "Daily Papers 2026-01-08: 1 new paper"
    for name, header in received.message.items():
        assert "evil" not in header, f"paper text in the {name} header"
    # The paper text reaches the mail, but only in the body.
    plain = received.message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "evil@example.org" in plain.get_content()


# Outbox


def make_outbox_message(renderer: Renderer) -> EmailMessage:
    """Return a new digest message to READERS[0], with its own Message-ID."""
    config = make_config(READERS[:1])
    digest = make_digest([make_paper()])
    return build_message(config, config.subscribers[0], digest, renderer, NOW)


def read_message_id(path: Path) -> str:
    """Return the Message-ID header of the .eml file at path."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return str(message["Message-ID"])


async def test_outbox_numbers_repeated_recipient(
    tmp_path: Path, renderer: Renderer
) -> None:
    directory = tmp_path / "outbox"
    messages = [make_outbox_message(renderer) for _ in range(3)]

    async with Outbox(directory) as outbox:
        for message in messages:
            await outbox.send(message)

    names = [
        f"{READERS[0]}.eml",
        f"{READERS[0]}-2.eml",
        f"{READERS[0]}-3.eml",
    ]
    assert sorted(path.name for path in directory.iterdir()) == sorted(names)
    for name, message in zip(names, messages, strict=True):
        assert read_message_id(directory / name) == message["Message-ID"]


async def test_outbox_keeps_existing_file(tmp_path: Path, renderer: Renderer) -> None:
    directory = tmp_path / "outbox"
    directory.mkdir()
    earlier = directory / f"{READERS[0]}.eml"
    earlier.write_bytes(b"Subject: earlier run\n\nkept\n")
    message = make_outbox_message(renderer)

    async with Outbox(directory) as outbox:
        await outbox.send(message)

    assert earlier.read_bytes() == b"Subject: earlier run\n\nkept\n"
    assert read_message_id(directory / f"{READERS[0]}-2.eml") == message["Message-ID"]
