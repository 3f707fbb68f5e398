"""Render digests as HTML, plain text and Markdown from the Jinja2 templates.

Paper text is only ever passed to templates as data: abstracts contain `{{`
and `{%`, which must reach the reader as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import css_inline
import jinja2

from .papers import Paper
from .readme import escape_cell, escape_title

TEMPLATE_NAMES = {
    "html": "digest.html.j2",
    "text": "digest.txt.j2",
    "markdown": "digest.md.j2",
}


@dataclass(frozen=True)
class Section:
    """The new papers of one keyword."""

    keyword: str
    papers: tuple[Paper, ...]


@dataclass(frozen=True)
class Digest:
    """The papers of one mail or of one archived digest file, by keyword."""

    day: date
    sections: tuple[Section, ...]
    recipient_name: str | None = None
    # False for the archived digest of all keywords, which is no one's mail.
    is_mail: bool = True
    paper_ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        ids = tuple(p.paper_id for section in self.sections for p in section.papers)
        object.__setattr__(self, "paper_ids", ids)

    @property
    def paper_count(self) -> int:
        """Return the number of papers in the digest."""
        return len(self.paper_ids)


def build_digest(
    day: date,
    keyword_names: list[str],
    new_ids: dict[str, list[str]],
    papers: dict[str, Paper],
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    recipient_name: str | None = None,
    is_mail: bool = True,
) -> Digest:
    """Collect the new papers of the given keywords, each paper once.

    A paper new under two keywords appears in the first one's section, in
    keyword order; ids in exclude (already mailed) are left out.
    """
    seen = set(exclude)
    sections = []
    for name in keyword_names:
        chosen = []
        for paper_id in new_ids.get(name, []):
            if paper_id in seen or paper_id not in papers:
                continue
            seen.add(paper_id)
            chosen.append(papers[paper_id])
        if chosen:
            chosen.sort(key=lambda p: (p.updated_at, p.paper_id), reverse=True)
            sections.append(Section(keyword=name, papers=tuple(chosen)))
    return Digest(
        day=day,
        sections=tuple(sections),
        recipient_name=recipient_name,
        is_mail=is_mail,
    )


def default_templates_dir() -> Path:
    """Return the templates installed with the package, or those of the source tree."""
    installed = Path(__file__).parent / "templates"
    if installed.is_dir():
        return installed
    return Path(__file__).parent.parent / "templates"


class InliningLoader(jinja2.FileSystemLoader):
    """A template loader that inlines the CSS of HTML templates once, on load.

    Mail clients drop <style> blocks, so every rule must sit in a style
    attribute. Inlining the template's source, whose Jinja2 tags pass through
    the HTML parser as text, costs once per template what inlining each
    rendered mail would cost per mail.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.inliner = css_inline.CSSInliner()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, is_current = super().get_source(environment, template)
        if template.endswith(".html.j2"):
            source = self.inliner.inline(source)
        return source, filename, is_current


class Renderer:
    """Jinja2 templates loaded and compiled once, used for every digest."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.environment = jinja2.Environment(
            loader=InliningLoader(templates_dir or default_templates_dir()),
            autoescape=jinja2.select_autoescape(["html.j2"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.environment.filters["md_text"] = escape_cell
        self.environment.filters["md_title"] = escape_title

    def render(self, digest: Digest, kind: str) -> str:
        """Render a digest as 'html' (CSS inlined), 'text' or 'markdown'."""
        template = self.environment.get_template(TEMPLATE_NAMES[kind])
        return template.render(digest=digest)
