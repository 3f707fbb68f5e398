"""The daily run: fetch every keyword, update the store, write the README and
the archived digest, then mail each subscriber the new papers they follow."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from .arxiv_client import ArxivFetcher
from .config import DigestConfig, Settings
from .delivery import ArchivedDay, prepare_daily_mails, send_mails
from .errors import ConfigError, FetchError, UsageError
from .readme import render_readme, write_readme
from .render import Digest, Renderer
from .store import PUBLISHED_FILE_MODE, Store, locked_store, write_atomically

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


@dataclass
class RunReport:
    """The outcome of a daily run, for the summary line and the exit status."""

    day: date
    keywords_fetched: int = 0
    baseline_keywords: list[str] = field(default_factory=list)
    new_papers: int = 0
    mails_sent: int = 0
    failures: list[str] = field(default_factory=list)
    is_stopped: bool = False
    # Seconds spent per phase: fetch, diff, readme, render, send.
    phase_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Add the time the block takes to the phase's total."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed_s = time.perf_counter() - started
            self.phase_s[phase] = self.phase_s.get(phase, 0.0) + elapsed_s

    @property
    def exit_status(self) -> int:
        """Return 0 when everything succeeded, 1 when anything failed."""
        return 1 if self.failures else 0

    def summary(self) -> str:
        """Return the one-line summary printed at the end of a run."""
        counts = [
            count_of(self.keywords_fetched, "keyword") + " fetched",
            count_of(self.new_papers, "new paper"),
            count_of(self.mails_sent, "mail") + " sent",
            count_of(len(self.failures), "failure"),
        ]
        return f"{self.day.isoformat()}: {', '.join(counts)}"


def count_of(number: int, noun: str) -> str:
    """Return '1 mail' or '3 mails'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def check_output_path(path: Path) -> None:
    """Raise ConfigError unless a file can be written at path."""
    if path.is_dir():
        raise ConfigError(f"--readme: {path} is a directory, expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"--readme: cannot create the directory of {path}: {error.strerror}"
        ) from None


@dataclass(frozen=True)
class RunOptions:
    """Options of a daily run beyond its configuration."""

    readme_path: Path | None = None
    # Seconds to wait for another process that holds the data directory's lock.
    lock_wait_s: float = 0.0
    # Set from another thread to stop the run between two requests or mails.
    stop: threading.Event | None = None
    now: Callable[[], datetime] = utc_now
    progress: Callable[[int, int, str], None] | None = None


def run_daily(
    config: DigestConfig,
    settings: Settings,
    day: date,
    options: RunOptions | None = None,
) -> RunReport:
    """Do one day's work and return its report; per-item failures are in the report.

    Raises StoreError when the data directory or the store cannot be used.
    """
    options = options or RunOptions()
    readme = options.readme_path or settings.data_dir / "README.md"
    check_output_path(readme)
    started = time.monotonic()
    started_at = options.now()
    report = RunReport(day=day)
    with locked_store(settings.data_dir, options.lock_wait_s, options.stop) as store:
        # Papers become "seen" in the same write that archives them as new, so a
        # crash can never leave a paper seen but in no digest.
        with store.batch():
            new_ids = fetch_keywords(config, settings, store, day, report, options)
            with report.timing("diff"):
                all_new = {i for ids in new_ids.values() for i in ids}
                report.new_papers = len(all_new)
                store.archive_digest(day, new_ids, store.get_papers(all_new))
        with report.timing("diff"):
            archive = ArchivedDay.load(store, day)

        with report.timing("readme"):
            if report.keywords_fetched:
                write_readme(readme, render_page(config, store, day))
                logger.info("README written to %s", readme)
            else:
                logger.error("README left unchanged: no keyword was fetched")

        with report.timing("render"):
            renderer = Renderer()
            full = archive.full_digest(config)
            write_digest_files(settings.data_dir / "digests", full, renderer)
            mails = prepare_daily_mails(config, store, archive, renderer, options.now())
        with report.timing("send"):
            delivery = send_mails(
                mails, settings, store, day, options.now, stop=options.stop
            )
        report.mails_sent = delivery.sent
        report.failures.extend(delivery.failures)

        report.is_stopped = options.stop is not None and options.stop.is_set()
        with store.batch():
            store.merge_journal()
            if not report.is_stopped:
                store.record_run(day, started_at, options.now())
            rows = {keyword.name: config.max_papers for keyword in config.keywords}
            store.prune(day, config.archive_days, rows)

    phases = ", ".join(f"{name} {s:.1f} s" for name, s in report.phase_s.items())
    logger.info(
        "run of %s finished in %.1f s (%s)", day, time.monotonic() - started, phases
    )
    return report


def fetch_keywords(
    config: DigestConfig,
    settings: Settings,
    store: Store,
    day: date,
    report: RunReport,
    options: RunOptions,
) -> dict[str, list[str]]:
    """Fetch and store every keyword; return the ids new to each known keyword."""
    fetcher = ArxivFetcher(settings)
    new_ids: dict[str, list[str]] = {}
    for number, keyword in enumerate(config.keywords, start=1):
        if options.stop is not None and options.stop.is_set():
            logger.info(
                "stopping: %d keywords not fetched", len(config.keywords) - number + 1
            )
            break
        if options.progress is not None:
            options.progress(number, len(config.keywords), keyword.name)
        try:
            with report.timing("fetch"):
                found = fetcher.fetch(keyword, config.max_papers)
        except FetchError as error:
            logger.error("%s", error)
            report.failures.append(str(error))
            continue
        report.keywords_fetched += 1

        with report.timing("diff"):
            is_baseline = not store.is_known_keyword(keyword.name)
            ids = store.merge_papers(keyword.name, found)
            if is_baseline:
                store.add_keyword(keyword.name, day)
        if is_baseline:
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


def rebuild_readme(config: DigestConfig, settings: Settings, path: Path | None) -> Path:
    """Write the README from the store alone, dated with the latest digest."""
    with locked_store(settings.data_dir) as store:
        dates = store.digest_dates()
        if not dates:
            raise UsageError(
                f"{settings.data_dir}: no digest archived yet; run 'digest once' first"
            )
        readme = path or settings.data_dir / "README.md"
        write_readme(readme, render_page(config, store, dates[-1]))
    return readme


def write_digest_files(directory: Path, digest: Digest, renderer: Renderer) -> None:
    """Write the day's whole digest as Markdown and HTML."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = digest.day.isoformat()
    markdown = renderer.render(digest, "markdown")
    html = renderer.render(digest, "html")
    write_atomically(directory / f"{stem}.md", markdown, PUBLISHED_FILE_MODE)
    write_atomically(directory / f"{stem}.html", html, PUBLISHED_FILE_MODE)
