"""The TinyDB store: papers per keyword, the daily digests and their deliveries.

Tables:
- papers: one document per paper id (without version), the latest version's
  record plus the names of the keywords that have listed it; papers that no
  README row needs are pruned;
- seen: per keyword, every paper id it has ever listed, so that a pruned paper
  that comes back is not new;
- keywords: when each keyword was first fetched, so that its first papers form
  a baseline that is recorded but mailed to nobody;
- digests: per date, the ids of the papers each keyword found new that day;
- deliveries: per date and subscriber, the paper ids a mail carried and
  whether the mail server accepted it;
- runs: the dates whose daily run completed, so the daemon can catch up a
  missed run without repeating a finished one.

Only one process may write at a time: writers use locked_store, which holds the
data directory's lock. Readers may open the store at any time, because every
write replaces the file whole.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import filelock
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document

from .errors import ConfigError, StoreError
from .papers import Paper

logger = logging.getLogger(__name__)

STORE_FILE = "store.json"
LOCK_FILE = ".lock"
JOURNAL_FILE = "deliveries.journal"

# Permission bits of files meant to be published: the README and the digests.
PUBLISHED_FILE_MODE = 0o644


class AtomicJSONStorage(Storage):
    """TinyDB storage that keeps the data in memory and replaces the file atomically.

    Each write goes to a temporary file in the same directory, is flushed and
    fsynced, then renamed over the store, so a crash leaves either the old or the
    new file and never a truncated one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] | None = None
        self.loaded = False
        # While deferred, writes stay in memory until flush().
        self.deferred = False
        self.dirty = False

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self.loaded:
            self.data = self._load()
            self.loaded = True
        return self.data

    def _load(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreError(f"{self.path}: cannot read the store: {error}") from None
        # Writes replace the file whole, so even an empty file means damage.
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise StoreError(
                f"{self.path}: the store is not valid JSON ({error}); "
                "restore it from a backup or move it away to start afresh"
            ) from None
        problem = find_shape_problem(data)
        if problem is not None:
            raise StoreError(
                f"{self.path}: the store is damaged: {problem}; "
                "restore it from a backup or move it away to start afresh"
            )
        return data  # type: ignore[no-any-return]

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.data = data
        self.loaded = True
        if self.deferred:
            self.dirty = True
            return
        self.flush()

    def flush(self) -> None:
        """Write the data held in memory to the file."""
        self.dirty = False
        text = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        try:
            write_atomically(self.path, text)
        except OSError as error:
            raise StoreError(f"{self.path}: cannot write the store: {error}") from None


# Fields each document of a table must have, checked when the store is read.
REQUIRED_FIELDS = {
    "papers": {"paper_id", "version", "title", "updated_at", "keywords"},
    "keywords": {"name"},
    "digests": {"date", "keywords", "papers"},
    "deliveries": {"date", "email", "paper_ids", "status"},
    "runs": {"date"},
    "seen": {"keyword", "ids"},
}


def find_shape_problem(data: Any) -> str | None:
    """Return what is wrong with the tables of a loaded store, or None."""
    if not isinstance(data, dict):
        return "expected a JSON object of tables"
    for table, documents in data.items():
        if not isinstance(documents, dict):
            return f"table {table!r} is not an object"
        required = REQUIRED_FIELDS.get(table, set())
        for doc_id, document in documents.items():
            if not isinstance(document, dict):
                return f"document {doc_id} of table {table!r} is not an object"
            missing = required - document.keys()
            if missing:
                fields = ", ".join(sorted(missing))
                return f"document {doc_id} of table {table!r} lacks {fields}"
    return None


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace the file at path with text so that readers see old or new, never half.

    mode is the new file's permission bits; the store keeps the default 0o600
    because it lists subscribers' addresses.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Store:
    """Papers, digests and deliveries in one TinyDB file in the data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = TinyDB(path, storage=AtomicJSONStorage)
        self.papers = self.db.table("papers")
        self.keywords = self.db.table("keywords")
        self.digests = self.db.table("digests")
        self.deliveries = self.db.table("deliveries")
        self.runs = self.db.table("runs")
        self.seen = self.db.table("seen")
        self._seen_ids: dict[str, set[str]] = {}
        self.journal_path = path.with_name(JOURNAL_FILE)
        self._journal = self._read_journal()
        self._index: dict[tuple[str, str], set[str]] | None = None
        self._after_flush: list[Callable[[], None]] = []
        self._paper_doc_ids = {
            record["paper_id"]: int(doc_id)
            for doc_id, record in self._raw_table("papers").items()
        }

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        """Open the store in data_dir without the lock, creating the directory."""
        prepare_data_dir(data_dir)
        return cls(data_dir / STORE_FILE)

    def close(self) -> None:
        """Release the TinyDB handle; every write outside a batch is on disk."""
        self.db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes of the block into one, made only if the block succeeds.

        A crash or an exception inside the block leaves the file as it was, so
        papers recorded as seen and the digest that lists them as new are
        written together or not at all.
        """
        storage = self._storage()
        storage.deferred = True
        try:
            yield
        except BaseException:
            storage.deferred = False
            storage.dirty = False
            storage.loaded = False  # read the file again: memory has half a batch
            self._after_flush = []
            raise
        storage.deferred = False
        if storage.dirty:
            storage.flush()
        self._run_after_flush()

    # Keywords

    def is_known_keyword(self, name: str) -> bool:
        """Return whether the keyword has been fetched successfully before."""
        return any(doc["name"] == name for doc in self.keywords.all())

    def add_keyword(self, name: str, today: date) -> None:
        """Record that the keyword was fetched for the first time on today."""
        self.keywords.insert({"name": name, "first_fetched": today.isoformat()})

    # Papers

    def merge_papers(self, keyword: str, papers: Iterable[Paper]) -> list[str]:
        """Store the keyword's papers and return the ids new to this keyword.

        A paper already stored is updated when the fetched copy has a newer version
        or update time. It counts as new only if this keyword never listed it.
        """
        new_ids: list[str] = []
        changes: dict[str, dict[str, Any]] = {}
        inserts: list[dict[str, Any]] = []
        listed: set[str] = set()
        seen = self.seen_ids(keyword)
        for paper in papers:
            if paper.paper_id in listed:
                continue  # listed twice in one response
            listed.add(paper.paper_id)
            if paper.paper_id not in seen:
                new_ids.append(paper.paper_id)
            doc_id = self._paper_doc_ids.get(paper.paper_id)
            if doc_id is None:
                inserts.append({**paper.to_record(), "keywords": [keyword]})
                continue
            stored = self.papers.get(doc_id=doc_id)
            assert isinstance(stored, Document)
            fields = updated_fields(stored, paper, keyword)
            if fields:
                changes[paper.paper_id] = fields

        if changes:
            # One callable update writes the file once for all changed papers.
            self.papers.update(
                lambda doc: doc.update(changes[doc["paper_id"]]),
                doc_ids=[self._paper_doc_ids[paper_id] for paper_id in changes],
            )
        if inserts:
            doc_ids = self.papers.insert_multiple(inserts)
            for record, doc_id in zip(inserts, doc_ids, strict=True):
                self._paper_doc_ids[record["paper_id"]] = doc_id
        if new_ids:
            seen.update(new_ids)
            self.seen.upsert(
                {"keyword": keyword, "ids": sorted(seen)},
                lambda doc: doc["keyword"] == keyword,
            )
        return new_ids

    def seen_ids(self, keyword: str) -> set[str]:
        """Return every paper id the keyword has listed, pruned papers included."""
        if keyword not in self._seen_ids:
            ids: set[str] = set()
            for doc in self._raw_table("seen").values():
                if doc["keyword"] == keyword:
                    ids.update(doc["ids"])
            # Stores written before the seen table know a keyword's papers only
            # from the papers table.
            for record in self._raw_table("papers").values():
                if keyword in record["keywords"]:
                    ids.add(record["paper_id"])
            self._seen_ids[keyword] = ids
        return self._seen_ids[keyword]

    def prune(
        self, today: date, archive_days: int, readme_rows: dict[str, int]
    ) -> None:
        """Remove what neither a README row nor a retained digest needs.

        Digests, deliveries and runs dated more than archive_days before today
        go. Paper records go unless they are among the readme_rows[keyword]
        newest of a keyword still configured. Their ids stay in the seen table.
        """
        cutoff = (today - timedelta(days=archive_days)).isoformat()
        for table in (self.digests, self.deliveries, self.runs):
            old = [
                int(doc_id)
                for doc_id, doc in self._raw_table(table.name).items()
                if doc["date"] < cutoff
            ]
            if old:
                table.remove(doc_ids=old)

        needed = {
            paper.paper_id
            for keyword, limit in readme_rows.items()
            for paper in self.papers_of(keyword, limit)
        }
        papers = self._raw_table("papers").values()
        listed_by = {name for record in papers for name in record["keywords"]}
        for keyword in listed_by | set(readme_rows):
            self.seen_ids(keyword)  # remember ids before their records go
        unneeded = [
            int(doc_id)
            for doc_id, record in self._raw_table("papers").items()
            if record["paper_id"] not in needed
        ]
        if unneeded:
            self._save_seen()
            self.papers.remove(doc_ids=unneeded)
            self._paper_doc_ids = {
                record["paper_id"]: int(doc_id)
                for doc_id, record in self._raw_table("papers").items()
            }
            self._index = None

    def _save_seen(self) -> None:
        """Write the seen ids of every keyword loaded so far."""
        for keyword, ids in self._seen_ids.items():
            self.seen.upsert(
                {"keyword": keyword, "ids": sorted(ids)},
                lambda doc, name=keyword: doc["keyword"] == name,
            )

    def papers_of(self, keyword: str, limit: int) -> list[Paper]:
        """Return the keyword's newest stored papers by update time, newest first."""
        records = [
            record
            for record in self._raw_table("papers").values()
            if keyword in record["keywords"]
        ]
        newest = heapq.nlargest(
            limit, records, key=lambda r: (r["updated_at"], r["paper_id"])
        )
        return [Paper.from_record(record) for record in newest]

    def _raw_table(self, name: str) -> dict[str, dict[str, Any]]:
        """Return a table's documents by id as stored, for reading only.

        TinyDB builds a Document object per record on every read, which costs
        seconds for a table of a hundred thousand papers read twenty times.
        """
        data = self.db.storage.read() or {}
        return data.get(name, {})

    def get_papers(self, paper_ids: Iterable[str]) -> dict[str, Paper]:
        """Return the stored papers with the given ids, by id."""
        found = {}
        for paper_id in paper_ids:
            doc_id = self._paper_doc_ids.get(paper_id)
            if doc_id is not None:
                record = self.papers.get(doc_id=doc_id)
                assert isinstance(record, Document)
                found[paper_id] = Paper.from_record(record)
        return found

    # Digests

    def archive_digest(
        self, day: date, new_ids: dict[str, list[str]], papers: dict[str, Paper]
    ) -> None:
        """Add the day's new paper ids per keyword to its archived digest.

        The papers are archived as they are now, so that the digest can be
        rendered again later exactly as it was mailed. A second run on the same
        date extends the digest of that date.
        """
        key = day.isoformat()
        existing = self.digests.get(lambda doc: doc["date"] == key)
        merged: dict[str, list[str]] = {}
        snapshots: dict[str, Any] = {}
        if isinstance(existing, Document):
            merged = {name: list(ids) for name, ids in existing["keywords"].items()}
            snapshots = dict(existing["papers"])
        for name, ids in new_ids.items():
            known = set(merged.get(name, []))
            merged.setdefault(name, []).extend(i for i in ids if i not in known)
            for paper_id in ids:
                snapshots.setdefault(paper_id, papers[paper_id].to_record())
        document = {"date": key, "keywords": merged, "papers": snapshots}
        self.digests.upsert(document, lambda doc: doc["date"] == key)

    def digest_of(self, day: date) -> tuple[dict[str, list[str]], dict[str, Paper]]:
        """Return the archived digest of a date: new ids per keyword, and the papers.

        A date without a digest returns two empty dicts.
        """
        document = self.digests.get(lambda doc: doc["date"] == day.isoformat())
        if not isinstance(document, Document):
            return {}, {}
        new_ids = {name: list(ids) for name, ids in document["keywords"].items()}
        papers = {i: Paper.from_record(r) for i, r in document["papers"].items()}
        return new_ids, papers

    # Deliveries
    #
    # Rewriting the whole store after every accepted mail would cost one store
    # dump per mail, so each record is first appended to a journal file and
    # fsynced, and merge_journal moves the journal into the store in one write.

    def delivered_ids(self, day: date, email: str) -> set[str]:
        """Return the ids of the papers that accepted mails of day carried to email."""
        return set(self._delivery_index().get((day.isoformat(), email), ()))

    def deliveries_of(self, day: date) -> list[dict[str, Any]]:
        """Return the delivery records of a date, oldest first."""
        key = day.isoformat()
        records = [dict(doc) for doc in self.deliveries.all() if doc["date"] == key]
        return records + [r for r in self._journal if r["date"] == key]

    def record_delivery(
        self,
        day: date,
        email: str,
        paper_ids: list[str],
        error: str | None,
        now: datetime,
        kind: str = "daily",
    ) -> None:
        """Record one mail of day to email: sent when error is None, else failed.

        kind is "daily" for the daily run and "resend" for a mail sent again by
        hand. The record is on disk when this returns.
        """
        record = {
            "id": uuid.uuid4().hex,
            "date": day.isoformat(),
            "email": email,
            "paper_ids": paper_ids,
            "status": "sent" if error is None else "failed",
            "error": error,
            "kind": kind,
            "at": now.isoformat(),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            with self.journal_path.open("a", encoding="utf-8") as journal:
                journal.write(line)
                journal.flush()
                os.fsync(journal.fileno())
        except OSError as error:
            raise StoreError(
                f"{self.journal_path}: cannot record a delivery: {error}"
            ) from None
        self._journal.append(record)
        self._add_to_index(record)

    def merge_journal(self) -> None:
        """Move the journal's records into the store with one write."""
        if not self._journal:
            return
        known = {doc.get("id") for doc in self.deliveries.all()}
        fresh = [record for record in self._journal if record["id"] not in known]
        if fresh:
            self.deliveries.insert_multiple(fresh)
        self._journal = []
        # Inside a batch the records reach the file only when the batch ends, and
        # the journal must outlive them until then.
        self._after_flush.append(lambda: self.journal_path.unlink(missing_ok=True))
        if not self._storage().deferred:
            self._run_after_flush()

    def _storage(self) -> AtomicJSONStorage:
        storage = self.db.storage
        assert isinstance(storage, AtomicJSONStorage)
        return storage

    def _run_after_flush(self) -> None:
        actions, self._after_flush = self._after_flush, []
        for action in actions:
            action()

    def _read_journal(self) -> list[dict[str, Any]]:
        """Return the records of a journal left by an earlier process."""
        try:
            lines = self.journal_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StoreError(f"{self.journal_path}: cannot read: {error}") from None
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # Only the line being written when a process was killed can be cut.
                logger.warning(
                    "%s: line %d is incomplete; skipped", self.journal_path, number
                )
        return records

    def _delivery_index(self) -> dict[tuple[str, str], set[str]]:
        """Return the delivered paper ids by (date, address), built once."""
        if self._index is None:
            self._index = {}
            for record in [*self.deliveries.all(), *self._journal]:
                self._add_to_index(record)
        return self._index

    def _add_to_index(self, record: dict[str, Any]) -> None:
        if self._index is not None and record["status"] == "sent":
            key = (record["date"], record["email"])
            self._index.setdefault(key, set()).update(record["paper_ids"])

    # Runs

    def record_run(
        self, day: date, started_at: datetime, finished_at: datetime
    ) -> None:
        """Record that the daily run of day completed."""
        self.runs.insert(
            {
                "date": day.isoformat(),
                "started_at": started_at.isoformat(),
                "finished_at": finished_at.isoformat(),
            }
        )

    def has_completed_run(self, day: date) -> bool:
        """Return whether a daily run of day has completed."""
        return any(doc["date"] == day.isoformat() for doc in self.runs.all())

    def latest_completed_run(self) -> date | None:
        """Return the latest date whose daily run completed, if any."""
        dates = [date.fromisoformat(doc["date"]) for doc in self.runs.all()]
        return max(dates, default=None)

    def digest_dates(self) -> list[date]:
        """Return the dates with an archived digest, oldest first."""
        return sorted(date.fromisoformat(doc["date"]) for doc in self.digests.all())


def updated_fields(
    stored: dict[str, Any], paper: Paper, keyword: str
) -> dict[str, Any]:
    """Return the fields of a stored paper to change for a freshly fetched copy."""
    fields: dict[str, Any] = {}
    is_newer = (paper.version, paper.updated_at.isoformat()) > (
        stored["version"],
        stored["updated_at"],
    )
    if is_newer:
        fields.update(paper.to_record())
    if keyword not in stored["keywords"]:
        fields["keywords"] = [*stored["keywords"], keyword]
    return fields


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory when needed and check that it is writable.

    Raises ConfigError, because the fix is another DIGEST_DATA_DIR or its rights.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"DIGEST_DATA_DIR: {data_dir}: cannot create the data directory: "
            f"{error.strerror}"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ConfigError(
            f"DIGEST_DATA_DIR: {data_dir}: the data directory is not writable"
        )


@contextmanager
def locked_store(
    data_dir: Path, wait_s: float = 0.0, stop: threading.Event | None = None
) -> Iterator[Store]:
    """Open the store while holding the data directory's lock.

    Waits up to wait_s seconds for another process to release the lock, or until
    stop is set, then raises StoreError. The store is read only once the lock is
    held, so no other writer's changes can be overwritten.
    """
    prepare_data_dir(data_dir)
    lock = filelock.FileLock(data_dir / LOCK_FILE)
    acquire(lock, data_dir, wait_s, stop)
    try:
        store = Store(data_dir / STORE_FILE)
        try:
            store.merge_journal()
            yield store
            store.merge_journal()
        finally:
            store.close()
    finally:
        lock.release()


def acquire(
    lock: filelock.BaseFileLock,
    data_dir: Path,
    wait_s: float,
    stop: threading.Event | None,
) -> None:
    """Acquire the lock within wait_s seconds, checking stop every second."""
    deadline = time.monotonic() + wait_s
    is_logged = False
    while True:
        remaining_s = deadline - time.monotonic()
        try:
            lock.acquire(timeout=max(0.0, min(1.0, remaining_s)))
            return
        except filelock.Timeout:
            pass
        if remaining_s <= 0 or (stop is not None and stop.is_set()):
            raise StoreError(
                f"{data_dir}: another digest process is using this data directory; "
                "wait for it to finish and try again"
            )
        if not is_logged:
            logger.info("waiting for another digest process to release %s", data_dir)
            is_logged = True
