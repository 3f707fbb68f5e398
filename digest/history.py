"""The delivery history: per date, who was due a digest and what became of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from .config import DigestConfig, Subscriber
from .delivery import ArchivedDay
from .store import Store

Status = Literal["sent", "failed", "pending"]


@dataclass
class DayHistory:
    """One date: its new papers and each due subscriber's delivery status."""

    day: date
    new_papers: int
    statuses: dict[str, Status] = field(default_factory=dict)

    def count(self, status: Status) -> int:
        """Return how many subscribers have the status."""
        return sum(1 for value in self.statuses.values() if value == status)


def delivery_status(
    config: DigestConfig, store: Store, archive: ArchivedDay, subscriber: Subscriber
) -> Status | None:
    """Return what became of a subscriber's digest of a day; None when not due.

    sent: every due paper reached them. failed: a mail with a paper still
    missing was rejected. pending: a paper is missing and no mail failed.
    """
    due = set(archive.digest_for(config, subscriber).paper_ids)
    if not due:
        return None
    missing = due - store.delivered_ids(archive.day, subscriber.email)
    if not missing:
        return "sent"
    for record in store.deliveries_of(archive.day):
        is_failure = (
            record["email"] == subscriber.email and record["status"] == "failed"
        )
        if is_failure and missing.intersection(record["paper_ids"]):
            return "failed"
    return "pending"


def day_history(config: DigestConfig, store: Store, day: date) -> DayHistory:
    """Return the history of one date, for the subscribers configured now."""
    archive = ArchivedDay.load(store, day)
    history = DayHistory(day=day, new_papers=len(archive.papers))
    for subscriber in config.subscribers:
        status = delivery_status(config, store, archive, subscriber)
        if status is not None:
            history.statuses[subscriber.email] = status
    return history


def build_history(config: DigestConfig, store: Store) -> list[DayHistory]:
    """Return the history of every archived date, newest first."""
    return [day_history(config, store, day) for day in reversed(store.digest_dates())]
