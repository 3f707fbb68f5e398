"""The published "Daily Papers" README: one section and table per keyword.

The layout is fixed by pages that users already publish and must stay byte for
byte the same. Unlike those pages, paper text can never break a table row or
inject markup: `|` is escaped, `<` and `&` become entities, and titles also
escape the Markdown link and emphasis characters `[`, `]` and `*`. Everything
else, LaTeX and `>` included, is written as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from .papers import Paper, normalize_whitespace
from .store import PUBLISHED_FILE_MODE, write_atomically

BACKSLASHES_BEFORE_PIPE = re.compile(r"(\\*)\|")

# A comment longer than this is folded into <details> behind its first characters.
COMMENT_FOLD_LENGTH = 20
COMMENT_SUMMARY_LENGTH = 5

HEADER = """\
# Daily Papers
The project automatically fetches the latest papers from arXiv based on keywords.

The subheadings in the README file represent the search keywords.

Only the most recent articles for each keyword are retained, up to a maximum of \
{max_papers} papers.

You can click the 'Watch' button to receive daily email notifications.

Last update: {day}

"""

TABLE_HEAD = """\
| **Title** | **Date** | **Abstract** | **Comment** |
| --- | --- | --- | --- |
"""


def escape_cell(text: str) -> str:
    """Escape text so it stays inside one table cell and adds no HTML.

    Line breaks end a table row, so the text must already be on one line.
    GitHub's table parser removes the backslash of every "\\|" before reading
    the cell, so backslashes written before a "|" (LaTeX's "\\|") are doubled
    to survive as written.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return BACKSLASHES_BEFORE_PIPE.sub(lambda m: m[1] * 2 + "\\|", text)


def escape_title(text: str) -> str:
    """Escape a title for use as link text in a table cell."""
    text = escape_cell(text)
    for character in "[]*":
        text = text.replace(character, "\\" + character)
    return text


def format_comment(comment: str | None) -> str:
    """Return the comment cell: empty, the comment, or the comment folded."""
    comment = normalize_whitespace(comment or "")
    if len(comment) <= COMMENT_FOLD_LENGTH:
        return escape_cell(comment)
    summary = escape_cell(comment[:COMMENT_SUMMARY_LENGTH])
    return fold(f"{summary}...", escape_cell(comment))


def fold(summary: str, body: str) -> str:
    """Return body folded behind summary in a <details> element."""
    return f"<details><summary>{summary}</summary><p>{body}</p></details>"


def format_row(paper: Paper) -> str:
    """Return one table row for a paper, ending in a newline."""
    title = f"**[{escape_title(normalize_whitespace(paper.title))}]({paper.abs_url})**"
    updated = paper.updated_at.date().isoformat()
    abstract = fold("Show", escape_cell(normalize_whitespace(paper.summary)))
    return f"| {title} | {updated} | {abstract} | {format_comment(paper.comment)} |\n"


def render_readme(
    sections: Iterable[tuple[str, list[Paper]]], day: date, max_papers: int
) -> str:
    """Render the README from (keyword name, newest papers) pairs in page order."""
    parts = [HEADER.format(max_papers=max_papers, day=day.isoformat())]
    for name, papers in sections:
        parts.append(f"## {escape_cell(name)}\n")
        parts.append(TABLE_HEAD)
        parts.extend(format_row(paper) for paper in papers)
        parts.append("\n")
    return "".join(parts)


def write_readme(path: Path, text: str) -> None:
    """Write the README atomically, creating its directory when needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text, mode=PUBLISHED_FILE_MODE)
