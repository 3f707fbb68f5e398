"""The README table: folding, escaping and the layout of the published page."""

from __future__ import annotations

from datetime import UTC, date, datetime
from html.parser import HTMLParser

import cmarkgfm
import cmarkgfm.cmark
import pytest
from factories import make_paper
from reference import REFERENCE_README

from digest.readme import format_comment, format_row, render_readme


def cells(row: str) -> list[str]:
    """Split a table row at its unescaped pipes."""
    inner = row.rstrip("\n").removeprefix("| ").removesuffix(" |")
    parts, current, index = [], "", 0
    while index < len(inner):
        if inner.startswith("\\|", index):
            current += "\\|"
            index += 2
        elif inner.startswith(" | ", index):
            parts.append(current)
            current = ""
            index += 3
        else:
            current += inner[index]
            index += 1
    parts.append(current)
    return parts


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("12345678901234567890", "12345678901234567890"),
        (
            "123456789012345678901",
            "<details><summary>12345...</summary>"
            "<p>123456789012345678901</p></details>",
        ),
        (
            "This paper has been accepted",
            "<details><summary>This ...</summary>"
            "<p>This paper has been accepted</p></details>",
        ),
        ("10 pages,\n 5 figures", "10 pages, 5 figures"),
        ("a|b <c> & d", "a\\|b &lt;c> &amp; d"),
    ],
)
def test_comment_cell(comment, expected):
    assert format_comment(comment) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Plain title", "Plain title"),
        ("A | B", "A \\| B"),
        ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),
        ("R&D", "R&amp;D"),
        ("**bold** [link](x)", "\\*\\*bold\\*\\* \\[link\\](x)"),
        ("$\\mathcal{O}(n)$ > 2", "$\\mathcal{O}(n)$ > 2"),
        ("0", "0"),
        ("Line\r\nbreak\tand  tab", "Line break and tab"),
        ("Emoji 🚀 and ünïcödé", "Emoji 🚀 and ünïcödé"),
    ],
)
def test_title_is_escaped_in_link(title, expected):
    row = format_row(make_paper(title=title))

    assert row.startswith(f"| **[{expected}](https://arxiv.org/abs/2601.00001v1)** |")


def test_hostile_text_keeps_four_cells():
    paper = make_paper(
        title="a | b | c [x] **y**",
        summary="x | y\n| --- |\n<details> {{ z }} {% if %} & \\| end",
        comment="c | d | e | f | g | h | i",
    )

    row = format_row(paper)

    assert row.count("\n") == 1
    assert len(cells(row)) == 4
    assert "<details> {{" not in row
    assert "&lt;details> {{ z }} {% if %} &amp; \\\\\\| end" in row


def test_long_abstract_stays_in_one_row():
    paper = make_paper(summary="word " * 2000)

    row = format_row(paper)

    assert row.count("\n") == 1
    assert len(cells(row)) == 4
    assert len(row) > 10_000


def test_row_shows_version_and_update_date():
    paper = make_paper(
        paper_id="2512.07344",
        version=5,
        updated_at=datetime(2026, 1, 7, 23, 59, tzinfo=UTC),
    )

    row = format_row(paper)

    assert (
        cells(row)[0] == "**[A study of things](https://arxiv.org/abs/2512.07344v5)**"
    )
    assert cells(row)[1] == "2026-01-07"
    assert cells(row)[2] == (
        "<details><summary>Show</summary><p>We study things.</p></details>"
    )
    assert cells(row)[3] == ""


def test_page_layout():
    sections = [
        ("First", [make_paper("2601.00002"), make_paper("2601.00001")]),
        ("Second", []),
    ]

    page = render_readme(sections, date(2026, 1, 9), max_papers=7)

    lines = page.split("\n")
    assert lines[0] == "# Daily Papers"
    assert "up to a maximum of 7 papers." in page
    assert "Last update: 2026-01-09\n\n## First\n" in page
    assert page.index("2601.00002") < page.index("2601.00001")
    assert page.endswith("| --- | --- | --- | --- |\n\n")
    assert "\n\n## Second\n| **Title** |" in page


class TableReader(HTMLParser):
    """Collect the text of each table cell and every element name of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: set[str] = set()
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def render_gfm(markdown: str) -> TableReader:
    """Render Markdown as GitHub does, raw HTML allowed, and read its tables."""
    html = cmarkgfm.github_flavored_markdown_to_html(
        markdown, options=cmarkgfm.cmark.Options.CMARK_OPT_UNSAFE
    )
    reader = TableReader()
    reader.feed(html)
    return reader


HOSTILE_PAPERS = [
    make_paper(
        "2601.00001",
        title="| <script>alert(1)</script> [x](y) **z** & $\\|A\\|_2$",
        summary="{{ 7*7 }} {% if %} a | b <img src=x onerror=alert(1)> \\| & 😀",
        comment="exactly twenty chars",
    ),
    make_paper(
        "2601.00002",
        title="0",
        summary="x" * 10_000,
        comment="twenty-one characters",
    ),
    make_paper(
        "2601.00003", title="Tabs\tand\r\nbreaks", summary="ünïcödé", comment=""
    ),
]


def test_github_renders_original_text():
    page = render_readme([("K", HOSTILE_PAPERS)], date(2026, 1, 9), max_papers=100)

    reader = render_gfm(page)

    assert "script" not in reader.tags
    assert "img" not in reader.tags
    header, *rows = reader.rows
    assert header == ["Title", "Date", "Abstract", "Comment"]
    assert len(rows) == len(HOSTILE_PAPERS)
    for row, paper in zip(rows, HOSTILE_PAPERS, strict=True):
        assert len(row) == 4
        assert row[0] == " ".join(paper.title.split())
        assert row[1] == "2026-01-06"
        assert row[2] == "Show" + paper.summary


def test_github_renders_folded_comment():
    page = render_readme([("K", HOSTILE_PAPERS)], date(2026, 1, 9), max_papers=100)

    rows = render_gfm(page).rows[1:]

    assert rows[0][3] == "exactly twenty chars"
    assert rows[1][3] == "twent...twenty-one characters"
    assert rows[2][3] == ""


def test_reference_page_renders_as_tables():
    page = REFERENCE_README.read_text(encoding="utf-8")

    rows = render_gfm(page).rows

    assert len(rows) == 80 + 4
    assert all(len(row) == 4 for row in rows)
