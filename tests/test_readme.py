"""The README table: folding, escaping and the layout of the published page."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from factories import make_paper

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
    assert "&lt;details> {{ z }} {% if %} &amp; \\\\| end" in row


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
