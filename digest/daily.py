"""The daily run: fetch every keyword, update the store, write the README and
the archived digest, then mail each subscriber the new papers they follow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import filelock

from .arxiv_client import ArxivFetcher
from .config import DigestConfig, Settings
from .errors import DeliveryError, FetchError, StoreError
from .mailer import MailRejectedError, Outbox, SmtpTransport, build_message
from .papers import Paper
from .readme import render_readme, write_readme
from .render import Digest, Renderer, build_digest
from .store import Store, write_atomically

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


@dataclass
class RunReport:
    """What a daily run did, for the summary line and the exit status."""

    day: date
    keywords_fetched: int = 0
    baseline_keywords: list[str] = field(default_factory=list)
    new_papers: int = 0
    mails_sent: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """Return 0 when everything succeeded, 1 when anything failed."""
        return 1 if self.failures else 0

    def summary(self) -> str:
        """Return the one-line summary printed at the end of a run."""
        return (
            f"{self.day.isoformat()}: {self.keywords_fetched} keywords fetched, "
            f"{self.new_papers} new papers, {self.mails_sent} mails sent, "
            f"{len(self.failures)} failures"
        )


@dataclass(frozen=True)
class Mail:
    """One prepared delivery: the message and the paper ids it carries."""

    email: str
    paper_ids: list[str]
    message: EmailMessage


@contextmanager
def locked_store(data_dir: Path) -> Iterator[Store]:
    """Open the store while holding the data directory's lock, or raise StoreError."""
    store = Store.open(data_dir)
    lock = filelock.FileLock(data_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreError(
            f"{data_dir}: another digest process is using this data directory; "
            "wait for it to finish"
        ) from None
    try:
        yield store
    finally:
        store.close()
        lock.release()


def run_daily(
    config: DigestConfig,
    settings: Settings,
    day: date,
    readme_path: Path | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunReport:
    """Do one day's work and return its report; per-item failures are in the report."""
    started = time.monotonic()
    report = RunReport(day=day)
    with locked_store(settings.data_dir) as store:
        new_ids = fetch_keywords(config, settings, store, day, report)
        all_new = {i for ids in new_ids.values() for i in ids}
        report.new_papers = len(all_new)
        store.archive_digest(day, new_ids, store.get_papers(all_new))
        day_digest, papers = store.digest_of(day)

        readme = readme_path or settings.data_dir / "README.md"
        write_readme(readme, render_page(config, store, day))
        logger.info("README written to %s", readme)

        renderer = Renderer()
        full = build_digest(day, [k.name for k in config.keywords], day_digest, papers)
        write_digest_files(settings.data_dir / "digests", full, renderer)

        mails = prepare_mails(config, store, day, day_digest, papers, renderer, now())
        transport = make_transport(settings, day)
        asyncio.run(deliver(mails, transport, store, day, now, report))

    logger.info("run finished in %.1f s", time.monotonic() - started)
    return report


def fetch_keywords(
    config: DigestConfig, settings: Settings, store: Store, day: date, report: RunReport
) -> dict[str, list[str]]:
    """Fetch and store every keyword; return the ids new to each known keyword."""
    fetcher = ArxivFetcher(settings)
    new_ids: dict[str, list[str]] = {}
    for keyword in config.keywords:
        try:
            found = fetcher.fetch(keyword, config.max_papers)
        except FetchError as error:
            logger.error("%s", error)
            report.failures.append(str(error))
            continue
        report.keywords_fetched += 1
        is_baseline = not store.is_known_keyword(keyword.name)
        ids = store.merge_papers(keyword.name, found)
        if is_baseline:
            store.add_keyword(keyword.name, day)
            report.baseline_keywords.append(keyword.name)
            logger.info(
                "keyword %r fetched for the first time: %d papers recorded, "
                "mailed to nobody",
                keyword.name,
                len(found),
            )
            continue
        new_ids[keyword.name] = ids
        logger.info("keyword %r: %d papers, %d new", keyword.name, len(found), len(ids))
    logger.info("%d arXiv requests", fetcher.requests_made)
    return new_ids


def render_page(config: DigestConfig, store: Store, day: date) -> str:
    """Render the README from the store, keywords in configuration order."""
    sections = [
        (keyword.name, store.papers_of(keyword.name, config.max_papers))
        for keyword in config.keywords
    ]
    return render_readme(sections, day, config.max_papers)


def write_digest_files(directory: Path, digest: Digest, renderer: Renderer) -> None:
    """Write the day's whole digest as Markdown and HTML."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = digest.day.isoformat()
    write_atomically(directory / f"{stem}.md", renderer.render(digest, "markdown"))
    write_atomically(directory / f"{stem}.html", renderer.render(digest, "html"))


def prepare_mails(
    config: DigestConfig,
    store: Store,
    day: date,
    day_digest: dict[str, list[str]],
    papers: dict[str, Paper],
    renderer: Renderer,
    now: datetime,
) -> list[Mail]:
    """Build a mail for each subscriber who has papers of day they have not had."""
    mails = []
    for subscriber in config.subscribers:
        names = [keyword.name for keyword in config.keywords_of(subscriber)]
        already = store.delivered_ids(day, subscriber.email)
        digest = build_digest(day, names, day_digest, papers, already, subscriber.name)
        if digest.paper_count == 0:
            continue
        message = build_message(config, subscriber, digest, renderer, now)
        mails.append(Mail(subscriber.email, list(digest.paper_ids), message))
    return mails


def make_transport(settings: Settings, day: date) -> Outbox | SmtpTransport:
    """Return the SMTP transport when a host is set, else the outbox of day."""
    if settings.smtp_host:
        return SmtpTransport(settings)
    return Outbox(settings.data_dir / "outbox" / day.isoformat())


async def deliver(
    mails: list[Mail],
    transport: Outbox | SmtpTransport,
    store: Store,
    day: date,
    now: Callable[[], datetime],
    report: RunReport,
) -> None:
    """Send the mails over one transport, recording each accepted or rejected mail.

    A delivery is recorded only after the server accepted or rejected it, so a
    mail cut off by a crash or an unusable server stays pending for the next run.
    """
    if not mails:
        logger.info("no mail to send")
        return
    try:
        async with transport:
            for mail in mails:
                try:
                    await transport.send(mail.message)
                except MailRejectedError as error:
                    store.record_delivery(
                        day, mail.email, mail.paper_ids, str(error), now()
                    )
                    logger.error("mail to %s %s", mail.email, error)
                    report.failures.append(f"mail to {mail.email} {error}")
                    continue
                store.record_delivery(day, mail.email, mail.paper_ids, None, now())
                report.mails_sent += 1
    except DeliveryError as error:
        pending = len(mails) - report.mails_sent
        logger.error("%s", error)
        report.failures.append(f"{error} ({pending} mails left pending)")
        return
    logger.info("%d mails sent to %s", report.mails_sent, transport.describe())
