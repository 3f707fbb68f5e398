"""Build Paper objects for unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from digest.papers import Paper


def make_paper(paper_id: str = "2601.00001", **fields: Any) -> Paper:
    """Return a plausible Paper; keyword arguments replace its fields."""
    values: dict[str, Any] = {
        "paper_id": paper_id,
        "version": 1,
        "title": "A study of things",
        "authors": ("Ada Lovelace", "Zoë Ångström"),
        "summary": "We study things.",
        "comment": None,
        "primary_category": "cs.CV",
        "categories": ("cs.CV", "cs.AI"),
        "published_at": datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 6, 12, 0, tzinfo=UTC),
    }
    values.update(fields)
    return Paper(**values)
