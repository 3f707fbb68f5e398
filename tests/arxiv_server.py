"""Local HTTP server that imitates the arXiv query API for tests.

`ArxivServer` serves GET and POST requests on `/api/query` with the parameters
of export.arxiv.org/api/query: `search_query`, `id_list`, `start`,
`max_results`, `sortBy` and `sortOrder`. It responds with an Atom feed whose
elements follow the layout recorded in April 2026, in
tests/data/arxiv-api-search-testing-start0-max10.xml. By default it hard-wraps
titles, summaries and comments at 80 columns, as the older layout in
tests/data/arxiv-api-legacy-format-2024-10-01-max1.xml wraps summaries, so a
client has to normalise whitespace.

Tests register the papers that a `search_query` value returns, and can queue
failing or malformed responses with `fail_next` and `respond_next_raw`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import socket
import sys
import textwrap
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

from lxml import etree

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
OPENSEARCH_NAMESPACE = "http://a9.com/-/spec/opensearch/1.1/"
ARXIV_NAMESPACE = "http://arxiv.org/schemas/atom"

ATOM_CONTENT_TYPE = "application/atom+xml; charset=utf-8"
QUERY_PATH = "/api/query"

# The arXiv API User's Manual caps one response at 2000 entries.
DEFAULT_PAGE_LIMIT = 2000

# Column at which titles, summaries and comments are hard-wrapped.
DEFAULT_WRAP_WIDTH = 80

DEFAULT_START = 0
DEFAULT_MAX_RESULTS = 10

SORT_CRITERIA = ("relevance", "lastUpdatedDate", "submittedDate")
SORT_ORDERS = ("ascending", "descending")

# New-style ids (0704.0001, 2601.02927) and old-style ids (hep-th/9901001,
# math.GT/0309136), each with an optional version suffix.
ARXIV_ID_PATTERN = re.compile(
    r"(?P<paper_id>\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d+))?"
)


@dataclass(frozen=True)
class RecordedPaper:
    """Metadata of one arXiv paper version, as the query API reports it."""

    paper_id: str
    version: int
    title: str
    summary: str
    comment: str | None
    authors: tuple[str, ...]
    primary_category: str
    categories: tuple[str, ...]
    published: datetime
    updated: datetime

    def __post_init__(self) -> None:
        match = ARXIV_ID_PATTERN.fullmatch(self.paper_id)
        if match is None or match["version"] is not None:
            raise ValueError(
                f"invalid paper_id {self.paper_id!r}: expected an arXiv id "
                "without version suffix, such as '2601.02927'"
            )
        if self.version < 1:
            raise ValueError(f"invalid version {self.version} of {self.paper_id}")
        for name in ("published", "updated"):
            value: datetime = getattr(self, name)
            if value.utcoffset() is None:
                raise ValueError(f"{name} of {self.paper_id} must be timezone-aware")

    @property
    def versioned_id(self) -> str:
        """Id with version suffix, such as '2601.02927v1'."""
        return f"{self.paper_id}v{self.version}"

    @property
    def abs_url(self) -> str:
        """URL of the abstract page of this version."""
        return f"https://arxiv.org/abs/{self.versioned_id}"

    @property
    def pdf_url(self) -> str:
        """URL of the PDF of this version."""
        return f"https://arxiv.org/pdf/{self.versioned_id}"


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str


class _QueryError(Exception):
    """A request parameter that the real API rejects with HTTP 400."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


class ArxivServer:
    """Local stand-in for export.arxiv.org/api/query on 127.0.0.1.

    Use it as a context manager, or call `start` and `stop`. All methods are
    thread-safe, so a test may change search results while a client is connected.
    """

    def __init__(
        self,
        *,
        page_limit: int = DEFAULT_PAGE_LIMIT,
        wrap_width: int | None = DEFAULT_WRAP_WIDTH,
        port: int = 0,
    ) -> None:
        """Create a stopped server that will listen on port, 0 for a free one.

        page_limit caps the entries of one response, whatever max_results requests.
        wrap_width is the column at which long titles, summaries and comments
        are wrapped, or None to write each of them on one line.
        """
        self.page_limit = page_limit
        self.wrap_width = wrap_width
        self._port = port
        self._lock = threading.Lock()
        self._results_by_query: dict[str, list[RecordedPaper]] = {}
        self._canned: deque[_Response] = deque()
        self._requests: list[dict[str, str]] = []
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            raise RuntimeError("ArxivServer is already running")
        self._httpd = _HttpServer(self, self._port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"arxiv-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and wait for handler threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """Address the server listens on."""
        return self._running_httpd().server_address[0]

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        return self._running_httpd().server_address[1]

    @property
    def url(self) -> str:
        """Query endpoint, such as 'http://127.0.0.1:PORT/api/query'."""
        return f"http://{self.host}:{self.port}{QUERY_PATH}"

    def _running_httpd(self) -> _HttpServer:
        if self._httpd is None:
            raise RuntimeError("ArxivServer is not running; call start() first")
        return self._httpd

    # Search results

    def add(self, search_query: str, papers: Iterable[RecordedPaper]) -> None:
        """Register the papers returned for this exact decoded search_query.

        A second call with the same search_query replaces the earlier papers.
        The order of `papers` is the order for sortBy=relevance.
        """
        papers = list(papers)
        with self._lock:
            self._results_by_query[search_query] = papers

    def set_papers(
        self, results_by_query: Mapping[str, Iterable[RecordedPaper]]
    ) -> None:
        """Replace all registered search results, for example for a second day."""
        new_results = {
            query: list(papers) for query, papers in results_by_query.items()
        }
        with self._lock:
            self._results_by_query = new_results

    def clear(self) -> None:
        """Forget all registered search results and queued faults.

        The request log stays. `clear_requests` empties it.
        """
        with self._lock:
            self._results_by_query = {}
            self._canned.clear()

    @property
    def requests(self) -> list[dict[str, str]]:
        """Copy of the decoded query parameters of every request received so far."""
        with self._lock:
            return [dict(params) for params in self._requests]

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._requests.clear()

    # Faults

    def fail_next(
        self,
        status: int,
        body: bytes | None = None,
        count: int = 1,
        content_type: str | None = None,
    ) -> None:
        """Respond to the next `count` requests with this HTTP status and body.

        Without a body the response is the status line's reason phrase as plain
        text. Without a content_type, a body that starts like XML is sent as
        Atom, one that starts like HTML as text/html, anything else as text.
        """
        if body is None:
            body = f"{status} {_reason_phrase(status)}\n".encode()
        if content_type is None:
            content_type = _guess_content_type(body)
        self._queue(_Response(status, body, content_type), count)

    def respond_next_raw(
        self,
        body: bytes,
        count: int = 1,
        content_type: str = ATOM_CONTENT_TYPE,
    ) -> None:
        """Respond to the next `count` requests with HTTP 200 and this exact body."""
        self._queue(_Response(HTTPStatus.OK, body, content_type), count)

    def _queue(self, response: _Response, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._canned.extend([response] * count)

    # Request handling, called from the handler threads

    def _handle(self, path: str, params: dict[str, str]) -> _Response:
        with self._lock:
            self._requests.append(dict(params))
            if self._canned:
                return self._canned.popleft()
            results_by_query = dict(self._results_by_query)
            page_limit = self.page_limit
            wrap_width = self.wrap_width

        if path != QUERY_PATH:
            body = f"404 Not Found: {path}\n".encode()
            return _Response(HTTPStatus.NOT_FOUND, body, "text/plain; charset=utf-8")

        try:
            feed = _build_query_feed(params, results_by_query, page_limit, wrap_width)
        except _QueryError as error:
            body = build_error_feed(error.error_id, error.message)
            return _Response(HTTPStatus.BAD_REQUEST, body, ATOM_CONTENT_TYPE)
        return _Response(HTTPStatus.OK, feed, ATOM_CONTENT_TYPE)


class _HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that can close idle keep-alive connections on stop."""

    # Non-daemon handler threads, so server_close() waits for all of them.
    daemon_threads = False
    block_on_close = True

    def __init__(self, arxiv_server: ArxivServer, port: int = 0) -> None:
        self.arxiv_server = arxiv_server
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _RequestHandler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away, as a killed client process does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every client socket, which ends the handler threads."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # OSError means the client has closed the connection already.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections open between requests, as the real service does.
    protocol_version = "HTTP/1.1"
    server_version = "ArxivTestServer/1.0"
    server: _HttpServer

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        self._respond(split.path, split.query)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode("utf-8", errors="replace")
        split = urlsplit(self.path)
        query = "&".join(part for part in (split.query, form) if part)
        self._respond(split.path, query)

    def _respond(self, path: str, query: str) -> None:
        # A repeated parameter keeps its last value.
        params = dict(parse_qsl(query, keep_blank_values=True))
        response = self.server.arxiv_server._handle(path, params)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of one access log line per request."""


# Feed building


def _build_query_feed(
    params: Mapping[str, str],
    results_by_query: Mapping[str, Sequence[RecordedPaper]],
    page_limit: int,
    wrap_width: int | None,
) -> bytes:
    search_query = params.get("search_query", "")
    id_list_text = params.get("id_list", "")
    start = _parse_count(params, "start", DEFAULT_START)
    max_results = _parse_count(params, "max_results", DEFAULT_MAX_RESULTS)
    sort_by = params.get("sortBy", "relevance")
    sort_order = params.get("sortOrder", "descending")
    # NOTE: the error ids and messages for sortBy and sortOrder are made up,
    # because no response of the real service to such a request was recorded.
    if sort_by not in SORT_CRITERIA:
        raise _QueryError(
            f"unknown_sortBy_{sort_by}", f"sortBy must be one of {SORT_CRITERIA}"
        )
    if sort_order not in SORT_ORDERS:
        raise _QueryError(
            f"unknown_sortOrder_{sort_order}", f"sortOrder must be one of {SORT_ORDERS}"
        )

    id_list = _parse_id_list(id_list_text)
    matches = _select_papers(search_query, id_list, results_by_query)
    matches = _sort_papers(matches, sort_by, sort_order)
    page = matches[start : start + min(max_results, page_limit)]

    root = _feed_element()
    query_text = (
        f"search_query={search_query}&id_list={id_list_text}"
        f"&start={start}&max_results={max_results}"
    )
    _add_text(
        root, ATOM_NAMESPACE, "id", f"https://arxiv.org/api/{_feed_hash(query_text)}"
    )
    _add_text(root, ATOM_NAMESPACE, "title", f"arXiv Query: {query_text}")
    _add_text(root, ATOM_NAMESPACE, "updated", _format_time(datetime.now(UTC)))
    self_query = urlencode(
        {
            "search_query": search_query,
            "start": start,
            "max_results": max_results,
            "id_list": id_list_text,
        },
        safe=":",
    )
    _add_element(
        root,
        ATOM_NAMESPACE,
        "link",
        href=f"https://arxiv.org/api/query?{self_query}",
        type="application/atom+xml",
    )
    # NOTE: itemsPerPage repeats the requested max_results, as in the recorded
    # responses. What the real service reports when max_results exceeds its
    # 2000-entry cap was not recorded.
    _add_text(root, OPENSEARCH_NAMESPACE, "itemsPerPage", str(max_results))
    _add_text(root, OPENSEARCH_NAMESPACE, "totalResults", str(len(matches)))
    _add_text(root, OPENSEARCH_NAMESPACE, "startIndex", str(start))
    for paper in page:
        _add_entry(root, paper, wrap_width)
    return _serialize(root)


def build_error_feed(error_id: str, message: str) -> bytes:
    """Build the one-entry feed with which the API reports an invalid request.

    The layout follows tests/data/arxiv-api-error-http400-bad-id.xml.
    """
    now = _format_time(datetime.now(UTC))
    error_url = f"https://arxiv.org/api/errors#{error_id}"
    root = _feed_element()
    _add_text(root, ATOM_NAMESPACE, "id", "https://arxiv.org/")
    _add_text(root, ATOM_NAMESPACE, "title", "arXiv Search Results")
    _add_text(root, ATOM_NAMESPACE, "updated", now)
    _add_text(root, OPENSEARCH_NAMESPACE, "itemsPerPage", "1")
    _add_text(root, OPENSEARCH_NAMESPACE, "totalResults", "1")
    _add_text(root, OPENSEARCH_NAMESPACE, "startIndex", "0")
    entry = _add_element(root, ATOM_NAMESPACE, "entry")
    _add_text(entry, ATOM_NAMESPACE, "id", error_url)
    _add_text(entry, ATOM_NAMESPACE, "title", "Error")
    _add_text(entry, ATOM_NAMESPACE, "updated", now)
    _add_element(
        entry, ATOM_NAMESPACE, "link", href=error_url, rel="alternate", type="text/html"
    )
    _add_text(entry, ATOM_NAMESPACE, "summary", message)
    author = _add_element(entry, ATOM_NAMESPACE, "author")
    _add_text(author, ATOM_NAMESPACE, "name", "arXiv api core")
    return _serialize(root)


def _parse_count(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name, "")
    if text == "":
        return default
    # NOTE: the error id and message are made up, because no response of
    # the real service to a non-numeric start or max_results was recorded.
    if not text.isdecimal():
        raise _QueryError(
            f"{name}_must_be_a_non-negative_integer",
            f"{name} must be a non-negative integer, got {text!r}",
        )
    return int(text)


def _parse_id_list(id_list_text: str) -> list[tuple[str, int | None]]:
    ids: list[tuple[str, int | None]] = []
    for item in id_list_text.split(","):
        item = item.strip()
        if not item:
            continue
        match = ARXIV_ID_PATTERN.fullmatch(item)
        if match is None:
            # Same error id and summary as the recorded response for id_list=abc.
            raise _QueryError(
                f"incorrect_id_format_for_{item}", f"incorrect id format for {item}"
            )
        version = int(match["version"]) if match["version"] else None
        ids.append((match["paper_id"], version))
    return ids


def _select_papers(
    search_query: str,
    id_list: Sequence[tuple[str, int | None]],
    results_by_query: Mapping[str, Sequence[RecordedPaper]],
) -> list[RecordedPaper]:
    """Select the papers of a request, as the arXiv API User's Manual describes.

    With only search_query, the papers registered for it. With only id_list,
    the known papers with those ids in id_list order. With both, the papers
    of search_query whose id is in id_list.
    """
    if not id_list:
        return list(results_by_query.get(search_query, ()))

    def is_listed(paper: RecordedPaper) -> bool:
        return any(
            paper.paper_id == paper_id and version in (None, paper.version)
            for paper_id, version in id_list
        )

    if search_query:
        return [
            paper
            for paper in results_by_query.get(search_query, ())
            if is_listed(paper)
        ]

    known: dict[str, RecordedPaper] = {}
    for papers in results_by_query.values():
        for paper in papers:
            known[paper.paper_id] = paper
    selected = []
    for paper_id, version in id_list:
        paper = known.get(paper_id)
        if paper is not None and version in (None, paper.version):
            selected.append(paper)
    return selected


def _sort_papers(
    papers: list[RecordedPaper], sort_by: str, sort_order: str
) -> list[RecordedPaper]:
    descending = sort_order == "descending"
    if sort_by == "lastUpdatedDate":
        return sorted(papers, key=lambda paper: paper.updated, reverse=descending)
    if sort_by == "submittedDate":
        return sorted(papers, key=lambda paper: paper.published, reverse=descending)
    # Relevance is the registration order, most relevant first.
    return papers if descending else papers[::-1]


def _add_entry(
    feed: etree._Element, paper: RecordedPaper, wrap_width: int | None
) -> None:
    # Element order and the http/https mix follow the current layout.
    entry = _add_element(feed, ATOM_NAMESPACE, "entry")
    _add_text(entry, ATOM_NAMESPACE, "id", f"http://arxiv.org/abs/{paper.versioned_id}")
    _add_text(entry, ATOM_NAMESPACE, "title", _wrap_inline(paper.title, wrap_width))
    _add_text(entry, ATOM_NAMESPACE, "updated", _format_time(paper.updated))

    abs_link = {"href": paper.abs_url, "rel": "alternate", "type": "text/html"}
    _add_element(entry, ATOM_NAMESPACE, "link", **abs_link)
    pdf_link = {
        "href": paper.pdf_url,
        "rel": "related",
        "type": "application/pdf",
        "title": "pdf",
    }
    _add_element(entry, ATOM_NAMESPACE, "link", **pdf_link)

    _add_text(entry, ATOM_NAMESPACE, "summary", _wrap_block(paper.summary, wrap_width))
    for category in paper.categories:
        _add_element(
            entry, ATOM_NAMESPACE, "category", term=category, scheme=ARXIV_NAMESPACE
        )
    _add_text(entry, ATOM_NAMESPACE, "published", _format_time(paper.published))
    if paper.comment is not None:
        comment = _wrap_inline(paper.comment, wrap_width)
        _add_text(entry, ARXIV_NAMESPACE, "comment", comment)
    _add_element(
        entry, ARXIV_NAMESPACE, "primary_category", term=paper.primary_category
    )

    for name in paper.authors:
        author = _add_element(entry, ATOM_NAMESPACE, "author")
        _add_text(author, ATOM_NAMESPACE, "name", name)


def _wrap_inline(text: str, width: int | None) -> str:
    """Wrap a title or comment: continuation lines are indented by two spaces."""
    if width is None:
        return text
    return "\n".join(_wrap_lines(text, width, subsequent_indent="  "))


def _wrap_block(text: str, width: int | None) -> str:
    """Wrap a summary like the older layout: two leading spaces, a final newline."""
    if width is None:
        return text
    return "\n".join(_wrap_lines(text, width, initial_indent="  ")) + "\n"


def _wrap_lines(text: str, width: int, **indents: str) -> list[str]:
    # Breaking only at spaces keeps every word intact, so joining the lines
    # with single spaces restores text whose words were single-spaced.
    return textwrap.wrap(
        text, width, break_long_words=False, break_on_hyphens=False, **indents
    )


def _feed_element() -> etree._Element:
    nsmap = {
        "opensearch": OPENSEARCH_NAMESPACE,
        "arxiv": ARXIV_NAMESPACE,
        None: ATOM_NAMESPACE,
    }
    return etree.Element(f"{{{ATOM_NAMESPACE}}}feed", nsmap=nsmap)


def _add_element(
    parent: etree._Element, namespace: str, tag: str, **attributes: str
) -> etree._Element:
    return etree.SubElement(parent, f"{{{namespace}}}{tag}", attributes)


def _add_text(
    parent: etree._Element, namespace: str, tag: str, text: str
) -> etree._Element:
    # lxml escapes &, < and > and raises ValueError on characters that XML 1.0
    # cannot contain, such as most control characters.
    element = _add_element(parent, namespace, tag)
    element.text = text
    return element


def _serialize(root: etree._Element) -> bytes:
    # indent() only adds whitespace between elements and leaves the wrapped
    # text inside titles and summaries as it is.
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _feed_hash(query_text: str) -> str:
    """Derive a feed id suffix from the query, 27 characters long like the real ones."""
    digest = hashlib.sha1(query_text.encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Status"


def _guess_content_type(body: bytes) -> str:
    head = body.lstrip()[:64].lower()
    if head.startswith((b"<?xml", b"<feed")):
        return ATOM_CONTENT_TYPE
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html; charset=utf-8"
    return "text/plain; charset=utf-8"
