"""Check the parser of the reference "Daily Papers" page in tests/reference.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from arxiv_server import RecordedPaper
from reference import (
    load_reference,
    reference_keywords,
    reference_last_update,
)

TABLE_HEADER = (
    "| **Title** | **Date** | **Abstract** | **Comment** |\n| --- | --- | --- | --- |\n"
)


def row(paper_id: str, shown_date: str, comment_cell: str = "") -> str:
    return (
        f"| **[Title {paper_id}](https://arxiv.org/abs/{paper_id}v1)** | {shown_date} "
        f"| <details><summary>Show</summary><p>Abstract {paper_id}.</p></details> "
        f"| {comment_cell} |\n"
    )


def write_page(tmp_path: Path, sections: dict[str, list[str]]) -> Path:
    text = "# Daily Papers\n\nLast update: 2026-01-09\n"
    for keyword, rows in sections.items():
        text += f"\n## {keyword}\n{TABLE_HEADER}{''.join(rows)}"
    path = tmp_path / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_keywords_in_page_order() -> None:
    assert reference_keywords() == [
        "Video Anomaly Detection",
        "Video Understanding",
        "Vision Language Model",
        "Multimodal Large Language Model",
    ]
    assert reference_last_update() == date(2026, 1, 9)


def test_sorting_by_updated_keeps_page_order(
    reference_papers: dict[str, list[RecordedPaper]],
) -> None:
    for keyword, papers in reference_papers.items():
        resorted = sorted(papers, key=lambda paper: paper.updated, reverse=True)
        assert len(papers) == 20, keyword
        assert resorted == papers, keyword


def test_updated_times_are_unique(
    reference_papers: dict[str, list[RecordedPaper]],
) -> None:
    papers = {p.paper_id: p for ps in reference_papers.values() for p in ps}

    assert len(papers) == 78
    assert len({paper.updated for paper in papers.values()}) == 78


def test_first_row_fields(reference_papers: dict[str, list[RecordedPaper]]) -> None:
    paper = reference_papers["Video Anomaly Detection"][0]

    assert paper.paper_id == "2601.02927"
    assert paper.version == 1
    assert paper.title.startswith("PrismVAU: Prompt-Refined Inference System")
    assert paper.summary.startswith("Video Anomaly Understanding (VAU) extends")
    assert paper.summary.endswith("practical solution for real-world applications.")
    assert paper.updated.date() == date(2026, 1, 6)
    assert paper.updated.utcoffset() is not None
    assert paper.comment == (
        "This paper has been accepted to the 6th Workshop on Real-World "
        "Surveillance: Applications and Challenges (WACV 2025)"
    )


def test_comment_cells(reference_papers: dict[str, list[RecordedPaper]]) -> None:
    papers = {p.paper_id: p for ps in reference_papers.values() for p in ps}

    assert papers["2510.22693"].comment == "NeurIPS 2025 poster"
    assert papers["2511.13204"].comment == "Accepted to AAAI 2026"
    assert papers["2512.06845"].comment is None
    assert sum(paper.comment is None for paper in papers.values()) == 41


def test_repeated_papers_are_shared(
    reference_papers: dict[str, list[RecordedPaper]],
) -> None:
    for paper_id in ("2512.07344", "2601.03434"):
        found = [
            paper
            for papers in reference_papers.values()
            for paper in papers
            if paper.paper_id == paper_id
        ]
        assert len(found) == 2, paper_id
        assert found[0] == found[1], paper_id


def test_made_up_fields(reference_papers: dict[str, list[RecordedPaper]]) -> None:
    for papers in reference_papers.values():
        for paper in papers:
            assert paper.published <= paper.updated, paper.paper_id
            assert len(paper.authors) in (2, 3), paper.paper_id
            assert any(not name.isascii() for name in paper.authors), paper.paper_id
            assert paper.primary_category == "cs.CV"
            assert paper.categories == ("cs.CV", "cs.AI")
            if paper.version == 1:
                assert paper.published == paper.updated, paper.paper_id


def test_load_returns_fresh_lists() -> None:
    first = load_reference()
    first["Video Understanding"].clear()

    assert len(load_reference()["Video Understanding"]) == 20


def test_same_date_order_merged_across_sections(tmp_path: Path) -> None:
    # Section A puts 00003 above 00001, and section B puts 00004 above 00003,
    # all on one date. Page order of first appearance (00003, 00001, 00004)
    # would break section B, so only 00004, 00003, 00001 fits both.
    path = write_page(
        tmp_path,
        {
            "A": [row("2601.00003", "2026-01-05"), row("2601.00001", "2026-01-05")],
            "B": [
                row("2601.00002", "2026-01-06"),
                row("2601.00004", "2026-01-05"),
                row("2601.00003", "2026-01-05"),
            ],
        },
    )

    sections = load_reference(path)

    for papers in sections.values():
        resorted = sorted(papers, key=lambda paper: paper.updated, reverse=True)
        assert resorted == papers


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"A": ["| **[broken row** | 2026-01-05 | | |\n"]},
            "table row does not match",
        ),
        (
            {"A": [row("2601.00001", "2026-01-05", "a comment of more than twenty")]},
            "is not folded",
        ),
        (
            {
                "A": [
                    row(
                        "2601.00001",
                        "2026-01-05",
                        "<details><summary>wrong...</summary>"
                        "<p>a comment of more than twenty</p></details>",
                    )
                ]
            },
            "expected its first 5 characters",
        ),
        (
            {"A": [row("2601.00001", "2026-01-04"), row("2601.00002", "2026-01-05")]},
            "is later than",
        ),
        (
            {
                "A": [row("2601.00001", "2026-01-05")],
                "B": [row("2601.00001", "2026-01-05", "short note")],
            },
            "differs from its row",
        ),
        (
            {
                "A": [row("2601.00001", "2026-01-05"), row("2601.00002", "2026-01-05")],
                "B": [row("2601.00002", "2026-01-05"), row("2601.00001", "2026-01-05")],
            },
            "inconsistently",
        ),
    ],
)
def test_invalid_page_raises(
    tmp_path: Path, sections: dict[str, list[str]], message: str
) -> None:
    path = write_page(tmp_path, sections)

    with pytest.raises(ValueError, match=message):
        load_reference(path)
