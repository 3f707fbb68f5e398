"""The Paper record shared by the arXiv client, the store and the renderers."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

# The path of an abs URL: "2601.02927v3", or old-style "math.AP/0601001v1".
VERSIONED_ID_PATTERN = re.compile(r"^(?P<id>[\w.-]+(/\d+)?)v(?P<v>\d+)$")


def normalize_whitespace(text: str) -> str:
    """Collapse newlines, tabs and runs of spaces into single spaces."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Paper:
    """One arXiv paper at one version, with text already whitespace-normalised."""

    paper_id: str
    version: int
    title: str
    authors: tuple[str, ...]
    summary: str
    comment: str | None
    primary_category: str
    categories: tuple[str, ...]
    published_at: datetime
    updated_at: datetime

    @property
    def versioned_id(self) -> str:
        """Return the id with its version, e.g. 2601.02927v2."""
        return f"{self.paper_id}v{self.version}"

    @property
    def abs_url(self) -> str:
        """Return the abstract page of this version."""
        return f"https://arxiv.org/abs/{self.versioned_id}"

    @property
    def pdf_url(self) -> str:
        """Return the PDF of this version."""
        return f"https://arxiv.org/pdf/{self.versioned_id}"

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-ready dict for the store."""
        record = asdict(self)
        record["authors"] = list(self.authors)
        record["categories"] = list(self.categories)
        record["published_at"] = self.published_at.isoformat()
        record["updated_at"] = self.updated_at.isoformat()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Paper:
        """Rebuild a Paper from a dict written by to_record."""
        return cls(
            paper_id=record["paper_id"],
            version=int(record["version"]),
            title=record["title"],
            authors=tuple(record["authors"]),
            summary=record["summary"],
            comment=record["comment"],
            primary_category=record["primary_category"],
            categories=tuple(record["categories"]),
            published_at=datetime.fromisoformat(record["published_at"]),
            updated_at=datetime.fromisoformat(record["updated_at"]),
        )


def split_entry_id(entry_id: str) -> tuple[str, int]:
    """Split 'http://arxiv.org/abs/2601.02927v3' into ('2601.02927', 3)."""
    path = entry_id.rstrip("/").split("/abs/", 1)[-1]
    match = VERSIONED_ID_PATTERN.match(path)
    if match is None:
        raise ValueError(f"not an arXiv entry id with a version: {entry_id!r}")
    return match["id"], int(match["v"])
