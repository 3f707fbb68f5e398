"""Digest rendering: templates, escaping and the choice of papers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from factories import make_paper

from digest.render import Renderer, build_digest

DAY = date(2026, 1, 9)


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


def test_paper_in_two_keywords_appears_once():
    paper = make_paper("2601.00001")
    other = make_paper("2601.00002")
    new_ids = {"A": ["2601.00001"], "B": ["2601.00001", "2601.00002"]}
    papers = {p.paper_id: p for p in (paper, other)}

    digest = build_digest(DAY, ["A", "B"], new_ids, papers)

    assert [s.keyword for s in digest.sections] == ["A", "B"]
    assert [p.paper_id for p in digest.sections[0].papers] == ["2601.00001"]
    assert [p.paper_id for p in digest.sections[1].papers] == ["2601.00002"]
    assert digest.paper_count == 2


def test_excluded_and_unfollowed_papers_are_left_out():
    papers = {i: make_paper(i) for i in ("2601.00001", "2601.00002", "2601.00003")}
    new_ids = {"A": ["2601.00001", "2601.00002"], "B": ["2601.00003"]}

    digest = build_digest(DAY, ["A"], new_ids, papers, exclude={"2601.00001"})

    assert digest.paper_ids == ("2601.00002",)


def test_sections_sorted_newest_first():
    older = make_paper("2601.00001", updated_at=datetime(2026, 1, 1, tzinfo=UTC))
    newer = make_paper("2601.00002", updated_at=datetime(2026, 1, 8, tzinfo=UTC))
    papers = {p.paper_id: p for p in (older, newer)}

    digest = build_digest(DAY, ["A"], {"A": ["2601.00001", "2601.00002"]}, papers)

    assert digest.paper_ids == ("2601.00002", "2601.00001")


def hostile_digest():
    paper = make_paper(
        title="<script>alert('x')</script> {{ 7*7 }}",
        summary="Abstract with {% raw %} {{ config }} & <b>tags</b>",
        comment="Comment <img src=x onerror=alert(1)>",
        authors=("Zoë Ångström", "O'Brien <ob@example.org>"),
    )
    return build_digest(DAY, ["K"], {"K": [paper.paper_id]}, {paper.paper_id: paper})


def test_html_shows_text_and_runs_nothing(renderer):
    html = renderer.render(hostile_digest(), "html")

    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "{{ 7*7 }}" in html
    assert "49" not in html
    assert "{% raw %} {{ config }} &amp; &lt;b&gt;tags&lt;/b&gt;" in html
    assert "<img" not in html
    assert "O&#39;Brien &lt;ob@example.org&gt;" in html


def test_html_has_inlined_css(renderer):
    html = renderer.render(hostile_digest(), "html")

    assert "<style" not in html
    assert 'class="paper" style="' in html


@pytest.mark.parametrize("kind", ["text", "markdown", "html"])
def test_digest_shows_every_field(renderer, kind):
    paper = make_paper(
        "2601.04163",
        version=2,
        title="Fields",
        comment="12 pages",
        primary_category="cs.CL",
    )
    digest = build_digest(
        DAY, ["Keyword"], {"Keyword": [paper.paper_id]}, {paper.paper_id: paper}
    )

    output = renderer.render(digest, kind)

    for expected in (
        "Fields",
        "https://arxiv.org/abs/2601.04163v2",
        "https://arxiv.org/pdf/2601.04163v2",
        "Ada Lovelace",
        "2026-01-06",
        "cs.CL",
        "12 pages",
        "We study things.",
        "Keyword",
    ):
        assert expected in output


def test_text_keeps_template_syntax_verbatim(renderer):
    text = renderer.render(hostile_digest(), "text")

    assert "<script>alert('x')</script> {{ 7*7 }}" in text
    assert "{% raw %} {{ config }} & <b>tags</b>" in text


def test_markdown_escapes_markup(renderer):
    markdown = renderer.render(hostile_digest(), "markdown")

    assert "<script>" not in markdown
    assert "&lt;script>" in markdown
    assert "{{ 7\\*7 }}" in markdown
    assert "{% raw %} {{ config }}" in markdown
