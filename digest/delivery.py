"""Deliver digests: choose what each subscriber is due, send, and record it.

The daily run and a resend share this module. Both record a delivery only after
the mail server accepted or rejected the mail, so a mail cut off by a crash or
an unusable server stays pending.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage

from .config import DigestConfig, Settings, Subscriber
from .errors import DeliveryError
from .mailer import MailRejectedError, Outbox, SmtpTransport, build_message
from .papers import Paper
from .render import Digest, Renderer, build_digest
from .store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    """One prepared delivery: the message and the paper ids it carries."""

    email: str
    paper_ids: list[str]
    message: EmailMessage


@dataclass
class DeliveryReport:
    """How many mails were accepted, and one line per failure."""

    sent: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ArchivedDay:
    """A date's archived digest: new paper ids per keyword, and the papers."""

    day: date
    new_ids: dict[str, list[str]]
    papers: dict[str, Paper]

    @classmethod
    def load(cls, store: Store, day: date) -> ArchivedDay:
        """Read the archived digest of day from the store."""
        new_ids, papers = store.digest_of(day)
        return cls(day=day, new_ids=new_ids, papers=papers)

    def digest_for(
        self,
        config: DigestConfig,
        subscriber: Subscriber,
        exclude: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> Digest:
        """Return the subscriber's digest of this day, without the excluded ids."""
        names = [keyword.name for keyword in config.keywords_of(subscriber)]
        return build_digest(
            self.day, names, self.new_ids, self.papers, exclude, subscriber.name
        )

    def full_digest(self, config: DigestConfig) -> Digest:
        """Return the digest of every configured keyword."""
        names = [keyword.name for keyword in config.keywords]
        return build_digest(self.day, names, self.new_ids, self.papers, is_mail=False)


def prepare_mail(
    config: DigestConfig,
    subscriber: Subscriber,
    digest: Digest,
    renderer: Renderer,
    now: datetime,
) -> Mail:
    """Build the mail of one subscriber's digest."""
    message = build_message(config, subscriber, digest, renderer, now)
    return Mail(subscriber.email, list(digest.paper_ids), message)


def prepare_daily_mails(
    config: DigestConfig,
    store: Store,
    archive: ArchivedDay,
    renderer: Renderer,
    now: datetime,
) -> list[Mail]:
    """Build a mail for each subscriber who has papers of the day not yet mailed."""
    mails = []
    for subscriber in config.subscribers:
        delivered = store.delivered_ids(archive.day, subscriber.email)
        digest = archive.digest_for(config, subscriber, exclude=delivered)
        if digest.paper_count:
            mails.append(prepare_mail(config, subscriber, digest, renderer, now))
    return mails


Transport = Outbox | SmtpTransport


def make_transports(settings: Settings, day: date) -> list[Transport]:
    """Return DIGEST_SMTP_CONNECTIONS SMTP transports, or the outbox of day."""
    if settings.smtp_host:
        return [SmtpTransport(settings) for _ in range(settings.smtp_connections)]
    return [Outbox(settings.data_dir / "outbox" / day.isoformat())]


async def deliver(
    mails: list[Mail],
    transports: Transport | Sequence[Transport],
    store: Store,
    day: date,
    now: Callable[[], datetime],
    kind: str = "daily",
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Send the mails over the transports at once, recording each accepted or
    rejected one as its reply arrives.

    Each transport is one connection that takes the next mail when it is free.
    When stop is set, the mails being sent finish and the rest stay pending. A
    transport that fails for good stops, and the others go on with the queue.
    """
    report = DeliveryReport()
    if not mails:
        logger.info("no mail to send")
        return report
    if not isinstance(transports, Sequence):
        transports = [transports]

    queue = deque(mails)
    errors: list[DeliveryError] = []

    async def work(transport: Transport) -> None:
        try:
            async with transport:
                while queue and not (stop is not None and stop.is_set()):
                    mail = queue.popleft()
                    try:
                        await send_and_record(
                            mail, transport, store, day, now(), kind, report
                        )
                    except DeliveryError:
                        queue.appendleft(mail)  # still pending: another may send it
                        raise
        except DeliveryError as error:
            logger.warning("%s; this connection stops", error)
            errors.append(error)

    await asyncio.gather(*(work(transport) for transport in transports))

    if queue:
        reason = str(errors[0]) if errors else "stopping"
        failure = f"{reason} ({len(queue)} mails left pending)"
        if errors:
            logger.error("%s", failure)
            report.failures.append(failure)
        else:
            logger.info("%s", failure)
    noun = "mail" if report.sent == 1 else "mails"
    logger.info("%d %s sent to %s", report.sent, noun, transports[0].describe())
    return report


async def send_and_record(
    mail: Mail,
    transport: Transport,
    store: Store,
    day: date,
    now: datetime,
    kind: str,
    report: DeliveryReport,
) -> None:
    """Send one mail and record the outcome; DeliveryError leaves it unrecorded."""
    try:
        await transport.send(mail.message)
    except MailRejectedError as error:
        store.record_delivery(day, mail.email, mail.paper_ids, str(error), now, kind)
        logger.error("mail to %s %s", mail.email, error)
        report.failures.append(f"mail to {mail.email} {error}")
        return
    store.record_delivery(day, mail.email, mail.paper_ids, None, now, kind)
    report.sent += 1


def send_mails(
    mails: list[Mail],
    settings: Settings,
    store: Store,
    day: date,
    now: Callable[[], datetime],
    kind: str = "daily",
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Deliver the mails from synchronous code, on an event loop of its own."""
    transports = make_transports(settings, day)
    return asyncio.run(deliver(mails, transports, store, day, now, kind, stop))
