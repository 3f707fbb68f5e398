"""Fetch the newest papers of a keyword from the arXiv query API.

The `arxiv` package builds the request and parses the Atom feed. This module
adds what it lacks for an unattended daily run. Every request has a timeout,
and a 200 response must be an Atom feed, so that an HTML error page does not
read as "no papers". Each keyword is retried with exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import arxiv
import requests
import urllib3
from lxml import etree

from .config import Keyword, Settings
from .errors import FetchError
from .papers import Paper, normalize_whitespace, split_entry_id

logger = logging.getLogger(__name__)

# Attempts per keyword after the first one fails.
RETRIES = 3

# Bytes read from the socket at most at a time.
READ_SIZE = 65536

# The API returns at most 2000 entries per request.
MAX_PAGE_SIZE = 2000

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"


class InvalidFeedError(requests.RequestException):
    """A response that is not a usable arXiv Atom feed."""


class TimeoutSession(requests.Session):
    """A requests session whose every request completes within timeout_s seconds.

    requests applies its timeout to each socket operation, so a server that
    sends one byte at a time could hold a request forever. The body is read
    here against a deadline for the whole request instead.
    """

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        deadline = time.monotonic() + self.timeout_s
        kwargs.setdefault("timeout", self.timeout_s)
        kwargs["stream"] = True
        response = super().request(*args, **kwargs)
        body = read_body(response, deadline)
        # requests has no public way to hand over a body read by the caller.
        response._content = body
        check_feed(response)
        return response


def read_body(response: requests.Response, deadline: float) -> bytes:
    """Read the whole body, raising requests.Timeout once the deadline passes.

    read1 returns whatever has arrived, so the deadline is checked between
    small reads; iter_content would wait for each whole chunk.
    """
    chunks = []
    try:
        while chunk := response.raw.read1(READ_SIZE, decode_content=True):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise requests.Timeout(
                    "the whole response took longer than the timeout"
                )
    except urllib3.exceptions.ReadTimeoutError as error:
        raise requests.Timeout(str(error)) from None
    except urllib3.exceptions.HTTPError as error:
        raise requests.ConnectionError(str(error)) from None
    finally:
        response.close()
    return b"".join(chunks)


def check_feed(response: requests.Response) -> None:
    """Raise InvalidFeedError unless the response is an arXiv Atom feed with entries.

    The API reports a bad query as a feed whose only entry is titled "Error",
    sent with HTTP 400; its summary is the useful part of the message. A page
    without entries although the feed counts more results than its start index
    is a known transient fault of the API, and is retried like the others.
    """
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        root = etree.fromstring(response.content, parser=parser)
    except etree.XMLSyntaxError as error:
        if response.status_code != 200:
            return  # the arxiv package reports the HTTP status itself
        raise InvalidFeedError(f"response is not valid XML ({error})") from None

    total_text = root.findtext(f"{OPENSEARCH}totalResults")
    if response.status_code == 200 and root.tag != f"{ATOM}feed":
        raise InvalidFeedError(f"response is not an Atom feed (root <{root.tag}>)")
    if response.status_code == 200 and total_text is None:
        raise InvalidFeedError("response has no opensearch:totalResults")
    if root.tag != f"{ATOM}feed" or total_text is None:
        return  # not a feed, sent with an error status that arxiv reports

    entries = root.findall(f"{ATOM}entry")
    for entry in entries:
        if "/api/errors" in (entry.findtext(f"{ATOM}id") or ""):
            summary = entry.findtext(f"{ATOM}summary") or "unknown error"
            status = response.status_code
            raise InvalidFeedError(f"arXiv API error: {summary} (HTTP {status})")

    start_text = root.findtext(f"{OPENSEARCH}startIndex") or "0"
    if not entries and to_int(total_text) > to_int(start_text):
        raise InvalidFeedError(
            f"empty page although {total_text.strip()} results exist"
        )


def to_int(text: str) -> int:
    """Parse an opensearch count, reading anything unparsable as 0."""
    try:
        return int(text.strip())
    except ValueError:
        return 0


class ArxivFetcher:
    """Fetch keywords one after another, keeping arXiv's delay between requests."""

    def __init__(
        self,
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.delay_s = settings.arxiv_delay_s
        self.url = settings.arxiv_url
        self.sleep = sleep
        self.requests_made = 0
        # One client for the whole run, so its delay also applies across keywords.
        self.client = arxiv.Client(delay_seconds=self.delay_s, num_retries=0)
        self.client.query_url_format = self.url + "?{}"
        session = TimeoutSession(settings.arxiv_timeout_s)
        session.hooks["response"].append(self._count_request)
        # NOTE: the arxiv package has no public way to set a timeout or a session, so
        # its private _session attribute is replaced here (arxiv 2.x to 4.x).
        self.client._session = session

    def _count_request(self, response: requests.Response, **_: Any) -> None:
        self.requests_made += 1

    def fetch(self, keyword: Keyword, max_papers: int) -> list[Paper]:
        """Return up to max_papers newest papers of the keyword, newest first.

        Raises FetchError after RETRIES failed retries.
        """
        for attempt in range(RETRIES + 1):
            try:
                return self._fetch_once(keyword, max_papers)
            except (arxiv.ArxivError, requests.RequestException) as error:
                reason = describe_failure(error)
            if attempt < RETRIES:
                backoff_s = self.delay_s * 2**attempt
                logger.warning(
                    "keyword %r: %s; retry %d of %d in %.1f s",
                    keyword.name,
                    reason,
                    attempt + 1,
                    RETRIES,
                    backoff_s,
                )
                self.sleep(backoff_s)
        attempts = RETRIES + 1
        raise FetchError(
            f"keyword {keyword.name!r}: {reason} after {attempts} attempts ({self.url})"
        )

    def _fetch_once(self, keyword: Keyword, max_papers: int) -> list[Paper]:
        self.client.page_size = min(max_papers, MAX_PAGE_SIZE)
        search = arxiv.Search(
            query=build_query(keyword),
            max_results=max_papers,
            sort_by=arxiv.SortCriterion.LastUpdatedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        papers = []
        for result in self.client.results(search):
            try:
                papers.append(to_paper(result))
            except ValueError as error:
                logger.warning("keyword %r: entry skipped: %s", keyword.name, error)
        if keyword.categories:
            wanted = set(keyword.categories)
            papers = [
                paper for paper in papers if wanted.intersection(paper.categories)
            ]
        return papers


def build_query(keyword: Keyword) -> str:
    """Return the keyword's query, narrowed to its categories when it has any."""
    if not keyword.categories:
        return keyword.search_query
    categories = " OR ".join(f"cat:{category}" for category in keyword.categories)
    return f"({keyword.search_query}) AND ({categories})"


def to_paper(result: arxiv.Result) -> Paper:
    """Convert an arxiv.Result into a Paper with normalised whitespace."""
    paper_id, version = split_entry_id(result.entry_id)
    comment = normalize_whitespace(result.comment or "")
    return Paper(
        paper_id=paper_id,
        version=version,
        title=normalize_whitespace(result.title),
        authors=tuple(normalize_whitespace(author.name) for author in result.authors),
        summary=normalize_whitespace(result.summary),
        comment=comment or None,
        primary_category=result.primary_category,
        categories=tuple(result.categories),
        published_at=result.published,
        updated_at=result.updated,
    )


def describe_failure(error: Exception) -> str:
    """Return a short reason for a failed request, without the long query URL."""
    if isinstance(error, arxiv.HTTPError):
        return f"HTTP {error.status}"
    if isinstance(error, arxiv.UnexpectedEmptyPageError):
        return "empty page in the middle of the results"
    if isinstance(error, requests.Timeout):
        return "request timed out"
    if isinstance(error, requests.ConnectionError):
        return "connection failed"
    return str(error)
