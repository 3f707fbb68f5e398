"""Build digest mails and deliver them over SMTP or into an outbox directory."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTPUTF8
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from types import TracebackType

import aiosmtplib

from .config import DigestConfig, Settings, Subscriber
from .errors import DeliveryError, DigestError
from .render import Digest, Renderer

logger = logging.getLogger(__name__)

# Reconnections after a dropped connection or a temporary (4xx) reply.
SMTP_RETRIES = 3


def find_certificate_failure(
    error: BaseException,
) -> ssl.SSLCertVerificationError | None:
    """Return the certificate verification error behind error, if there is one.

    aiosmtplib wraps it in its own connection error for implicit TLS.
    """
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


class MailRejectedError(DigestError):
    """The mail server permanently rejected one message; the others go on."""


def build_message(
    config: DigestConfig,
    subscriber: Subscriber,
    digest: Digest,
    renderer: Renderer,
    now: datetime,
) -> EmailMessage:
    """Build the mail of one subscriber's digest, with a plain-text part always."""
    sender_name, sender_address = parseaddr(config.sender)
    count = digest.paper_count
    noun = "paper" if count == 1 else "papers"

    message = EmailMessage()
    message["Subject"] = f"Daily Papers {digest.day.isoformat()}: {count} new {noun}"
    message["From"] = make_address(sender_name, sender_address)
    message["To"] = make_address(subscriber.name or "", subscriber.email)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("digest", domain=sender_address.split("@")[-1])
    message["List-Unsubscribe"] = f"<mailto:{sender_address}?subject=unsubscribe>"
    message.set_content(renderer.render(digest, "text"))
    if subscriber.format == "html":
        message.add_alternative(renderer.render(digest, "html"), subtype="html")
    return message


def make_address(display_name: str, address: str) -> Address:
    """Return a header address; the email package encodes non-ASCII names."""
    username, _, domain = address.rpartition("@")
    return Address(display_name=display_name, username=username, domain=domain)


class Outbox:
    """Delivery into .eml files, for machines with no mail server configured."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def __aenter__(self) -> Outbox:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DeliveryError(
                f"{self.describe()}: cannot create it: {error.strerror}"
            ) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def send(self, message: EmailMessage) -> None:
        """Write the message to a new .eml file named after its recipient."""
        recipient = parseaddr(str(message["To"]))[1]
        stem = re.sub(r"[^\w.@+-]", "_", recipient)
        path = self.directory / f"{stem}.eml"
        number = 2
        while path.exists():
            path = self.directory / f"{stem}-{number}.eml"
            number += 1
        # An address with non-ASCII characters cannot be encoded in a 7-bit
        # header; RFC 6532 allows it as raw UTF-8, as SMTPUTF8 servers get it.
        policy = SMTPUTF8 if not recipient.isascii() else message.policy
        try:
            path.write_bytes(message.as_bytes(policy=policy))
        except OSError as error:
            raise DeliveryError(
                f"{path}: cannot write the mail: {error.strerror}"
            ) from None

    def describe(self) -> str:
        """Return where the mails go, for log lines."""
        return f"outbox {self.directory}"


class SmtpTransport:
    """One SMTP connection reused for a whole batch, reconnected when it drops."""

    def __init__(self, settings: Settings, backoff_s: float = 1.0) -> None:
        assert settings.smtp_host is not None
        self.settings = settings
        self.backoff_s = backoff_s
        self.client: aiosmtplib.SMTP | None = None

    def describe(self) -> str:
        """Return where the mails go, for log lines."""
        return f"mail server {self.settings.smtp_host}:{self.settings.smtp_port}"

    async def __aenter__(self) -> SmtpTransport:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open and authenticate the connection, or raise DeliveryError."""
        settings = self.settings
        password = settings.smtp_password
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            timeout=settings.smtp_timeout_s,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as error:
            raise DeliveryError(
                f"{self.describe()}: authentication failed ({error.code} "
                f"{error.message}); check DIGEST_SMTP_USERNAME and DIGEST_SMTP_PASSWORD"
            ) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            failure = find_certificate_failure(error)
            if failure is not None:
                raise DeliveryError(
                    f"{self.describe()}: the server's TLS certificate failed "
                    f"verification ({failure.verify_message}); check DIGEST_SMTP_HOST, "
                    "or trust its certificate authority with SSL_CERT_FILE"
                ) from None
            raise DeliveryError(f"{self.describe()}: cannot connect: {error}") from None
        self.client = client

    async def close(self) -> None:
        """Say QUIT when the connection is still open; errors of QUIT are dropped."""
        client, self.client = self.client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    async def send(self, message: EmailMessage) -> None:
        """Send one message, retrying temporary failures on a fresh connection.

        Raises MailRejectedError for a permanent (5xx) rejection of this message,
        and DeliveryError when the server stays unusable.
        """
        for attempt in range(SMTP_RETRIES + 1):
            try:
                await self._send_once(message)
                return
            except aiosmtplib.SMTPRecipientsRefused as error:
                refusal = error.recipients[0]
                reason = f"{refusal.code} {refusal.message}"
                if refusal.code >= 500:
                    raise MailRejectedError(f"rejected: {reason}") from None
                if attempt < SMTP_RETRIES:
                    await self._reconnect(attempt, reason)
                    continue
            except aiosmtplib.SMTPResponseException as error:
                reason = f"{error.code} {error.message}"
                if error.code < 500 and attempt < SMTP_RETRIES:
                    await self._reconnect(attempt, reason)
                    continue
                if error.code >= 500:
                    raise MailRejectedError(f"rejected: {reason}") from None
            except (
                aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError,
            ) as error:
                reason = str(error) or "connection lost"
                if attempt < SMTP_RETRIES:
                    await self._reconnect(attempt, reason)
                    continue
        raise DeliveryError(
            f"{self.describe()}: {reason}; giving up after {attempt + 1} attempts"
        )

    async def _send_once(self, message: EmailMessage) -> None:
        if self.client is None or not self.client.is_connected:
            await self.connect()
        assert self.client is not None
        await self.client.send_message(message)

    async def _reconnect(self, attempt: int, reason: str) -> None:
        delay_s = self.backoff_s * 2**attempt
        logger.warning(
            "%s: %s; retry %d of %d in %.1f s",
            self.describe(),
            reason,
            attempt + 1,
            SMTP_RETRIES,
            delay_s,
        )
        await self.close()
        await asyncio.sleep(delay_s)


async def check_server(settings: Settings) -> str:
    """Connect and authenticate to the mail server without sending; describe it."""
    transport = SmtpTransport(settings)
    async with transport:
        pass
    return transport.describe()
