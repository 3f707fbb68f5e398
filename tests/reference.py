"""Papers of a real published "Daily Papers" page, as test data.

tests/data/daily-papers-README.md has one `## <keyword>` section per keyword,
each with a four-column table of title, date, abstract and comment.
`load_reference` turns it into `RecordedPaper` values for `ArxivServer`.

The page shows neither authors, categories, publication dates nor times of
day, so this module makes them up deterministically. Each paper gets an
`updated` time on its shown date such that sorting by `updated`, newest first,
reproduces the row order of every section.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from arxiv_server import RecordedPaper

REFERENCE_README = Path(__file__).parent / "data" / "daily-papers-README.md"

PRIMARY_CATEGORY = "cs.CV"
CATEGORIES = ("cs.CV", "cs.AI")

# The page folds comments longer than this many characters into <details>,
# with the first FOLDED_PREFIX_LENGTH characters and "..." as the summary.
COMMENT_FOLD_LENGTH = 20
FOLDED_PREFIX_LENGTH = 5

# Papers of one date get updated times counting down one minute at a time
# from this time of day (UTC).
LATEST_TIME_OF_DAY = time(23, 0)

ASCII_NAMES = (
    "Alice Martin",
    "Bruno Costa",
    "Chen Wei",
    "Dmitri Volkov",
    "Emma Schmidt",
    "Farid Haddad",
    "Grace Okafor",
    "Hiro Tanaka",
    "Ines Moreau",
    "Jonas Berg",
    "Kavya Rao",
    "Liam Walsh",
)
NON_ASCII_NAMES = (
    "Zoë Ångström",
    "José Núñez",
    "Łukasz Wróbel",
    "Søren Ødegård",
    "Çağla Öztürk",
    "Nguyễn Văn Đức",
    "Björn Müller",
)

_SECTION_PATTERN = re.compile(r"## (?P<keyword>.+)")
_LAST_UPDATE_PATTERN = re.compile(r"Last update: (?P<date>\d{4}-\d{2}-\d{2})")
_TABLE_HEADER_LINES = (
    "| **Title** | **Date** | **Abstract** | **Comment** |",
    "| --- | --- | --- | --- |",
)
_ROW_PATTERN = re.compile(
    r"\| \*\*\[(?P<title>.+)\]\(https://arxiv\.org/abs/(?P<paper_id>[^)\s]+?)"
    r"v(?P<version>\d+)\)\*\* "
    r"\| (?P<date>\d{4}-\d{2}-\d{2}) "
    r"\| <details><summary>Show</summary><p>(?P<abstract>.*?)</p></details> "
    r"\| (?P<comment>.*?) ?\|"
)
_FOLDED_COMMENT_PATTERN = re.compile(
    r"<details><summary>(?P<prefix>.*)\.\.\.</summary><p>(?P<comment>.*)</p></details>"
)


@dataclass(frozen=True)
class _Row:
    paper_id: str
    version: int
    title: str
    shown_date: date
    abstract: str
    comment: str | None
    line_number: int


def load_reference(path: Path = REFERENCE_README) -> dict[str, list[RecordedPaper]]:
    """Parse the reference page into keyword → papers, both in page order.

    Raises ValueError on a line that does not fit the page layout, on a paper
    whose rows differ between sections, and on rows out of date order.
    """
    sections = _parse_sections_cached(path)
    return {keyword: list(papers) for keyword, papers in sections.items()}


def reference_keywords(path: Path = REFERENCE_README) -> list[str]:
    """Return the section names of the reference page in page order."""
    return list(_parse_sections_cached(path))


def reference_last_update(path: Path = REFERENCE_README) -> date:
    """Return the date of the page's "Last update:" line."""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _LAST_UPDATE_PATTERN.fullmatch(line)
        if match:
            return date.fromisoformat(match["date"])
    raise ValueError(f"{path}: missing 'Last update: YYYY-MM-DD' line")


def default_query(keyword: str) -> str:
    """Build the search_query that matches a keyword in title or abstract."""
    return f'ti:"{keyword}" OR abs:"{keyword}"'


@functools.cache
def _parse_sections_cached(path: Path) -> dict[str, tuple[RecordedPaper, ...]]:
    rows_by_keyword = _parse_rows(path)
    rows_by_id = _merge_duplicate_rows(path, rows_by_keyword)
    updated_by_id = _assign_updated_times(path, rows_by_keyword)
    papers_by_id = {
        paper_id: _make_paper(row, updated_by_id[paper_id])
        for paper_id, row in rows_by_id.items()
    }
    return {
        keyword: tuple(papers_by_id[row.paper_id] for row in rows)
        for keyword, rows in rows_by_keyword.items()
    }


def _parse_rows(path: Path) -> dict[str, list[_Row]]:
    rows_by_keyword: dict[str, list[_Row]] = {}
    keyword: str | None = None
    lines = path.read_text(encoding="utf-8").splitlines()
    for line_number, line in enumerate(lines, start=1):
        section = _SECTION_PATTERN.fullmatch(line)
        if section:
            keyword = section["keyword"].strip()
            if keyword in rows_by_keyword:
                raise ValueError(f"{path}:{line_number}: repeated section {keyword!r}")
            rows_by_keyword[keyword] = []
            continue
        if not line.startswith("|") or line in _TABLE_HEADER_LINES:
            continue
        if keyword is None:
            raise ValueError(
                f"{path}:{line_number}: table row before the first section"
            )
        rows_by_keyword[keyword].append(_parse_row(path, line_number, line))
    if not rows_by_keyword:
        raise ValueError(f"{path}: no '## <keyword>' sections found")
    return rows_by_keyword


def _parse_row(path: Path, line_number: int, line: str) -> _Row:
    match = _ROW_PATTERN.fullmatch(line)
    if match is None:
        raise ValueError(
            f"{path}:{line_number}: table row does not match '| **[title]"
            "(https://arxiv.org/abs/IDvN)** | date | <details>abstract | comment |'"
        )
    return _Row(
        paper_id=match["paper_id"],
        version=int(match["version"]),
        title=match["title"],
        shown_date=date.fromisoformat(match["date"]),
        abstract=match["abstract"],
        comment=_parse_comment(path, line_number, match["comment"].strip()),
        line_number=line_number,
    )


def _parse_comment(path: Path, line_number: int, cell: str) -> str | None:
    if cell == "":
        return None
    folded = _FOLDED_COMMENT_PATTERN.fullmatch(cell)
    if folded is None:
        if len(cell) > COMMENT_FOLD_LENGTH:
            raise ValueError(
                f"{path}:{line_number}: comment of {len(cell)} characters "
                f"is not folded into <details>: {cell!r}"
            )
        return cell
    comment = folded["comment"]
    prefix = folded["prefix"]
    if prefix != comment[:FOLDED_PREFIX_LENGTH] or len(comment) <= COMMENT_FOLD_LENGTH:
        raise ValueError(
            f"{path}:{line_number}: folded comment {comment!r} has summary "
            f"{prefix!r}..., expected its first {FOLDED_PREFIX_LENGTH} characters"
        )
    return comment


def _merge_duplicate_rows(
    path: Path, rows_by_keyword: dict[str, list[_Row]]
) -> dict[str, _Row]:
    """Map each paper id to its row, checking that repeated rows agree."""
    rows_by_id: dict[str, _Row] = {}
    for row in itertools.chain.from_iterable(rows_by_keyword.values()):
        first = rows_by_id.setdefault(row.paper_id, row)
        if _row_content(first) != _row_content(row):
            raise ValueError(
                f"{path}:{row.line_number}: paper {row.paper_id} differs from "
                f"its row on line {first.line_number}"
            )
    return rows_by_id


def _row_content(row: _Row) -> tuple[object, ...]:
    return (row.version, row.title, row.shown_date, row.abstract, row.comment)


def _assign_updated_times(
    path: Path, rows_by_keyword: dict[str, list[_Row]]
) -> dict[str, datetime]:
    """Give each paper an updated time that keeps every section's row order.

    Within one date, a row above another in any section must get the later
    time. These constraints form a graph over paper ids. A topological sort
    per date, with ties broken by first appearance on the page, ranks the
    papers. The paper with rank N gets LATEST_TIME_OF_DAY minus N minutes.
    """
    first_seen: dict[str, int] = {}
    shown_dates: dict[str, date] = {}
    successors: dict[str, set[str]] = {}
    for rows in rows_by_keyword.values():
        for row in rows:
            first_seen.setdefault(row.paper_id, len(first_seen))
            shown_dates[row.paper_id] = row.shown_date
            successors.setdefault(row.paper_id, set())
        for newer, older in itertools.pairwise(rows):
            if newer.shown_date < older.shown_date:
                raise ValueError(
                    f"{path}:{older.line_number}: date {older.shown_date} is later "
                    f"than {newer.shown_date} on the row above"
                )
            if newer.shown_date == older.shown_date:
                successors[newer.paper_id].add(older.paper_id)

    predecessor_counts = dict.fromkeys(successors, 0)
    for later_ids in successors.values():
        for paper_id in later_ids:
            predecessor_counts[paper_id] += 1

    updated: dict[str, datetime] = {}
    for shown_date in sorted(set(shown_dates.values())):
        ids = [paper_id for paper_id, day in shown_dates.items() if day == shown_date]
        ranked = _topological_order(ids, successors, predecessor_counts, first_seen)
        if len(ranked) < len(ids):
            raise ValueError(
                f"{path}: the sections order the papers of {shown_date} inconsistently"
            )
        latest = datetime.combine(shown_date, LATEST_TIME_OF_DAY, tzinfo=UTC)
        for rank, paper_id in enumerate(ranked):
            moment = latest - timedelta(minutes=rank)
            if moment.date() != shown_date:
                raise ValueError(f"{path}: too many papers on {shown_date}")
            updated[paper_id] = moment
    return updated


def _topological_order(
    ids: list[str],
    successors: dict[str, set[str]],
    predecessor_counts: dict[str, int],
    first_seen: dict[str, int],
) -> list[str]:
    """Sort ids with Kahn's algorithm. A shorter result means a cycle."""
    remaining = {paper_id: predecessor_counts[paper_id] for paper_id in ids}
    ready = [
        (first_seen[paper_id], paper_id) for paper_id in ids if remaining[paper_id] == 0
    ]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, paper_id = heapq.heappop(ready)
        order.append(paper_id)
        for later_id in successors[paper_id]:
            remaining[later_id] -= 1
            if remaining[later_id] == 0:
                heapq.heappush(ready, (first_seen[later_id], later_id))
    return order


def _make_paper(row: _Row, updated: datetime) -> RecordedPaper:
    return RecordedPaper(
        paper_id=row.paper_id,
        version=row.version,
        title=row.title,
        summary=row.abstract,
        comment=row.comment,
        authors=_make_authors(row.paper_id),
        primary_category=PRIMARY_CATEGORY,
        categories=CATEGORIES,
        published=_make_published(row, updated),
        updated=updated,
    )


def _make_authors(paper_id: str) -> tuple[str, ...]:
    """Pick two or three authors from the id's sequence number, one non-ASCII."""
    number = int(paper_id.split(".")[1])
    first = ASCII_NAMES[number % len(ASCII_NAMES)]
    second = NON_ASCII_NAMES[number % len(NON_ASCII_NAMES)]
    if number % 2 == 0:
        return (first, second)
    third = ASCII_NAMES[(number // len(ASCII_NAMES) + 1) % len(ASCII_NAMES)]
    if third == first:
        third = ASCII_NAMES[(number + 1) % len(ASCII_NAMES)]
    return (first, second, third)


def _make_published(row: _Row, updated: datetime) -> datetime:
    """Return when version 1 appeared.

    For version 1 that is `updated`, as on arXiv. Later versions get a day in
    the month that the id names (YYMM), or the day before `updated` if that
    day is not earlier.
    """
    if row.version == 1:
        return updated
    year_month, number = row.paper_id.split(".")
    month_start = datetime(
        2000 + int(year_month[:2]), int(year_month[2:]), 1, 9, 30, tzinfo=UTC
    )
    published = month_start + timedelta(days=int(number) % 28)
    if published >= updated:
        published = updated - timedelta(days=1)
    return published
