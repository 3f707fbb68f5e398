"""Send an archived digest again, without asking arXiv."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime

from .config import DigestConfig, Settings, Subscriber, normalize_address
from .delivery import ArchivedDay, DeliveryReport, Mail, prepare_mail, send_mails
from .errors import UsageError
from .history import delivery_status
from .render import Renderer
from .store import Store, locked_store

logger = logging.getLogger(__name__)


def find_subscribers(config: DigestConfig, addresses: list[str]) -> list[Subscriber]:
    """Return the subscribers with these addresses, or raise UsageError."""
    # Addresses compare without case, as the configuration's duplicate check does.
    by_address = {s.email.casefold(): s for s in config.subscribers}
    found = []
    for address in addresses:
        try:
            normalized = normalize_address(address)
        except ValueError as error:
            raise UsageError(f"--to: {error}") from None
        if normalized.casefold() not in by_address:
            raise UsageError(
                f"--to: {address} is not a subscriber in the configuration"
            )
        subscriber = by_address[normalized.casefold()]
        if subscriber not in found:
            found.append(subscriber)
    return found


def load_archive(store: Store, day: date) -> ArchivedDay:
    """Return the archived digest of day, or raise UsageError when there is none."""
    if day not in store.digest_dates():
        raise UsageError(
            f"no digest archived for {day.isoformat()}; "
            "'digest history' lists the dates"
        )
    return ArchivedDay.load(store, day)


def resend_digest(
    config: DigestConfig,
    settings: Settings,
    day: date,
    addresses: list[str],
    only_failed: bool,
    now: Callable[[], datetime],
) -> DeliveryReport:
    """Send the digest of day again to everyone due it, or to the given addresses.

    With only_failed, only subscribers whose delivery failed or is still pending
    get a mail, with the papers that have not reached them. Every mail is
    recorded as a resend.
    """
    chosen = find_subscribers(config, addresses) if addresses else None
    with locked_store(settings.data_dir) as store:
        archive = load_archive(store, day)
        mails = prepare_resend_mails(config, store, archive, chosen, only_failed, now())
        if not mails:
            logger.info("nothing to resend for %s", day)
            return DeliveryReport()
        return send_mails(mails, settings, store, day, now, kind="resend")


def prepare_resend_mails(
    config: DigestConfig,
    store: Store,
    archive: ArchivedDay,
    chosen: list[Subscriber] | None,
    only_failed: bool,
    now: datetime,
) -> list[Mail]:
    """Build the resend mails; an explicitly chosen subscriber must be due the day."""
    renderer = Renderer()
    mails = []
    for subscriber in chosen if chosen is not None else config.subscribers:
        status = delivery_status(config, store, archive, subscriber)
        if status is None:
            if chosen is not None:
                raise UsageError(
                    f"--to: {subscriber.email} had no papers in the digest of "
                    f"{archive.day.isoformat()}"
                )
            continue
        if only_failed and status == "sent":
            continue
        delivered = store.delivered_ids(archive.day, subscriber.email)
        exclude = delivered if only_failed else set()
        digest = archive.digest_for(config, subscriber, exclude=exclude)
        mails.append(prepare_mail(config, subscriber, digest, renderer, now))
    return mails
