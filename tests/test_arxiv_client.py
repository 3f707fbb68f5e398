"""The arXiv client against a local server that speaks the query API."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from reference import default_query

from digest.arxiv_client import RETRIES, ArxivFetcher
from digest.config import Keyword, Settings
from digest.errors import FetchError

DATA = Path(__file__).parent / "data"
VAD = "Video Anomaly Detection"


def make_fetcher(url: str, timeout_s: float = 5.0) -> ArxivFetcher:
    settings = Settings(
        DIGEST_ARXIV_URL=url, DIGEST_ARXIV_DELAY=0, DIGEST_ARXIV_TIMEOUT=timeout_s
    )
    return ArxivFetcher(settings)


@pytest.fixture
def vad_server(arxiv_server, reference_papers):
    arxiv_server.add(default_query(VAD), reference_papers[VAD])
    return arxiv_server


def test_papers_come_back_newest_first(vad_server, reference_papers):
    fetcher = make_fetcher(vad_server.url)

    papers = fetcher.fetch(Keyword(name=VAD), max_papers=100)

    expected = reference_papers[VAD]
    assert [p.versioned_id for p in papers] == [p.versioned_id for p in expected]
    assert [p.updated_at for p in papers] == [p.updated for p in expected]
    assert fetcher.requests_made == 1


def test_wrapped_text_is_normalised(vad_server, reference_papers):
    papers = make_fetcher(vad_server.url).fetch(Keyword(name=VAD), max_papers=100)

    for fetched, recorded in zip(papers, reference_papers[VAD], strict=True):
        assert fetched.title == recorded.title
        assert fetched.summary == recorded.summary
        assert fetched.comment == recorded.comment
        assert fetched.authors == recorded.authors


def test_max_papers_limits_request(vad_server):
    papers = make_fetcher(vad_server.url).fetch(Keyword(name=VAD), max_papers=5)

    assert len(papers) == 5
    assert vad_server.requests[0]["max_results"] == "5"


def test_paging_when_server_caps_page(vad_server, reference_papers):
    vad_server.page_limit = 7
    fetcher = make_fetcher(vad_server.url)

    papers = fetcher.fetch(Keyword(name=VAD), max_papers=100)

    assert len(papers) == len(reference_papers[VAD])
    assert [r["start"] for r in vad_server.requests] == ["0", "7", "14"]


def test_categories_narrow_query_and_results(arxiv_server, reference_papers):
    keyword = Keyword(name=VAD, categories=("cs.AI",))
    query = f"({default_query(VAD)}) AND (cat:cs.AI)"
    arxiv_server.add(query, reference_papers[VAD])

    papers = make_fetcher(arxiv_server.url).fetch(keyword, max_papers=100)

    assert arxiv_server.requests[0]["search_query"] == query
    assert len(papers) == len(reference_papers[VAD])
    narrow = Keyword(name=VAD, categories=("math.AP",))
    arxiv_server.add(f"({default_query(VAD)}) AND (cat:math.AP)", reference_papers[VAD])
    assert make_fetcher(arxiv_server.url).fetch(narrow, max_papers=100) == []


def test_recorded_real_answer_parses(arxiv_server):
    arxiv_server.respond_next_raw(
        (DATA / "arxiv-api-search-testing-start0-max10.xml").read_bytes()
    )

    papers = make_fetcher(arxiv_server.url).fetch(
        Keyword(name="testing"), max_papers=10
    )

    assert len(papers) == 10
    assert all(p.paper_id and p.version >= 1 for p in papers)
    assert all("\n" not in p.summary and "  " not in p.summary for p in papers)


def test_legacy_layout_parses(arxiv_server):
    body = (DATA / "arxiv-api-legacy-format-2024-10-01-max1.xml").read_bytes()
    arxiv_server.respond_next_raw(body)

    [paper] = make_fetcher(arxiv_server.url).fetch(Keyword(name="all"), max_papers=1)

    assert paper.versioned_id == "2409.20559v1"
    assert paper.summary.startswith("Learning from multimodal datasets can leverage")
    assert "\n" not in paper.summary


def test_zero_results_is_empty(arxiv_server):
    arxiv_server.respond_next_raw((DATA / "arxiv-api-zero-results.xml").read_bytes())

    assert make_fetcher(arxiv_server.url).fetch(Keyword(name="x"), max_papers=10) == []


def test_transient_errors_are_retried(vad_server, reference_papers):
    vad_server.fail_next(503, count=2)
    vad_server.fail_next(429)

    papers = make_fetcher(vad_server.url).fetch(Keyword(name=VAD), max_papers=100)

    assert len(papers) == len(reference_papers[VAD])
    assert len(vad_server.requests) == 4


def test_empty_page_in_paging_is_retried(vad_server, reference_papers):
    vad_server.page_limit = 7
    first_page = requests.get(
        vad_server.url,
        params={"search_query": default_query(VAD), "start": 0, "max_results": 100},
        timeout=5,
    ).content
    vad_server.clear_requests()
    vad_server.respond_next_raw(first_page)
    vad_server.respond_next_raw((DATA / "arxiv-api-zero-results.xml").read_bytes())

    papers = make_fetcher(vad_server.url).fetch(Keyword(name=VAD), max_papers=100)

    assert len(papers) == len(reference_papers[VAD])
    assert len(vad_server.requests) == 5


HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>"
ERROR_FEED = (DATA / "arxiv-api-error-http400-bad-id.xml").read_bytes()


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, b"busy", "HTTP 503"),
        (500, HTML_PAGE, "HTTP 500"),
        (200, HTML_PAGE, "response is not an Atom feed (root <html>)"),
        (200, b"Service Unavailable <p>", "response is not valid XML"),
        (200, b"<rss><channel/></rss>", "response is not an Atom feed (root <rss>)"),
        (
            200,
            b'<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title></feed>',
            "response has no opensearch:totalResults",
        ),
        (200, ERROR_FEED[: len(ERROR_FEED) // 2], "response is not valid XML"),
        (400, ERROR_FEED, "arXiv API error: incorrect id format for abc (HTTP 400)"),
    ],
)
def test_persistent_fault_is_fetch_error(vad_server, status, body, reason):
    vad_server.fail_next(status, body, count=RETRIES + 1)
    if status == 200:
        vad_server.clear()
        vad_server.respond_next_raw(body, count=RETRIES + 1)

    with pytest.raises(FetchError) as caught:
        make_fetcher(vad_server.url).fetch(Keyword(name=VAD), max_papers=100)

    message = str(caught.value)
    assert message.startswith(f"keyword '{VAD}': {reason}")
    assert f"after {RETRIES + 1} attempts ({vad_server.url})" in message
    assert len(vad_server.requests) == RETRIES + 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_is_fetch_error():
    url = f"http://127.0.0.1:{closed_port()}/api/query"

    with pytest.raises(FetchError, match="connection failed after 4 attempts"):
        make_fetcher(url).fetch(Keyword(name=VAD), max_papers=10)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never responds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/query"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_silent_server_times_out(silent_server):
    fetcher = make_fetcher(silent_server, timeout_s=0.2)
    started = time.monotonic()

    with pytest.raises(FetchError, match="request timed out after 4 attempts"):
        fetcher.fetch(Keyword(name=VAD), max_papers=10)

    assert time.monotonic() - started < 0.2 * (RETRIES + 1) + 2


@pytest.fixture
def dripping_server() -> Iterator[str]:
    """A server that sends a valid feed one byte every 0.1 seconds."""
    body = (DATA / "arxiv-api-zero-results.xml").read_bytes()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n".encode()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()

    def drip(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            connection.sendall(head)
            for byte in body:
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/query"
    stop.set()
    thread.join()
    listener.close()


def test_dripping_server_times_out(dripping_server):
    fetcher = make_fetcher(dripping_server, timeout_s=0.5)
    started = time.monotonic()

    with pytest.raises(FetchError, match="request timed out after 4 attempts"):
        fetcher.fetch(Keyword(name=VAD), max_papers=10)

    assert time.monotonic() - started < 0.5 * (RETRIES + 1) + 2
