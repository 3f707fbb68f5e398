"""Render an archived digest without sending it, for an operator to look at."""

from __future__ import annotations

from datetime import date

from .config import DigestConfig, Settings
from .delivery import ArchivedDay
from .errors import UsageError
from .render import Digest, Renderer
from .resend import find_subscribers, load_archive
from .store import Store


def render_preview(
    config: DigestConfig,
    settings: Settings,
    day: date | None,
    address: str | None,
    kind: str,
) -> str:
    """Render the digest of day (the latest by default), whole or for one address."""
    store = Store.open(settings.data_dir)
    try:
        archive = load_archive(store, day or latest_date(store))
    finally:
        store.close()
    digest = choose_digest(config, archive, address)
    return Renderer().render(digest, kind)


def latest_date(store: Store) -> date:
    """Return the latest date with an archived digest, or raise UsageError."""
    dates = store.digest_dates()
    if not dates:
        raise UsageError("no digest archived yet; run 'digest once' first")
    return dates[-1]


def choose_digest(
    config: DigestConfig, archive: ArchivedDay, address: str | None
) -> Digest:
    """Return the whole digest, or the one the subscriber with the address was due."""
    if address is None:
        return archive.full_digest(config)
    [subscriber] = find_subscribers(config, [address])
    return archive.digest_for(config, subscriber)
