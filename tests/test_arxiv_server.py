"""Check that ArxivServer responds like the arXiv query API and smtp_server works.

The arXiv tests talk to the server through the real `arxiv` package, so a
difference between the server and the real service that matters to that
client shows up here.
"""

from __future__ import annotations

import random
import smtplib
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import arxiv
import pytest
import requests
from arxiv_server import ATOM_CONTENT_TYPE, ArxivServer, RecordedPaper
from conftest import SmtpServer
from lxml import etree
from reference import default_query, reference_keywords

DATA_DIR = Path(__file__).parent / "data"
RECORDED_SEARCH = DATA_DIR / "arxiv-api-search-testing-start0-max10.xml"
RECORDED_ERROR = DATA_DIR / "arxiv-api-error-http400-bad-id.xml"

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"

KEYWORD = "Video Anomaly Detection"


def make_client(
    server: ArxivServer, page_size: int = 100, retries: int = 0
) -> arxiv.Client:
    client = arxiv.Client(page_size=page_size, delay_seconds=0, num_retries=retries)
    client.query_url_format = server.url + "?{}"
    return client


def fetch(
    server: ArxivServer,
    query: str,
    *,
    page_size: int = 100,
    max_results: int = 100,
    retries: int = 0,
    sort_by: arxiv.SortCriterion = arxiv.SortCriterion.LastUpdatedDate,
    sort_order: arxiv.SortOrder = arxiv.SortOrder.Descending,
) -> list[arxiv.Result]:
    client = make_client(server, page_size, retries)
    search = arxiv.Search(
        query=query, max_results=max_results, sort_by=sort_by, sort_order=sort_order
    )
    return list(client.results(search))


def normalize(text: str) -> str:
    return " ".join(text.split())


def short_ids(results: list[arxiv.Result]) -> list[str]:
    return [result.get_short_id() for result in results]


def versioned_ids(papers: list[RecordedPaper]) -> list[str]:
    return [paper.versioned_id for paper in papers]


def make_paper(paper_id: str, updated: datetime, **fields: object) -> RecordedPaper:
    values: dict[str, object] = {
        "paper_id": paper_id,
        "version": 1,
        "title": f"Paper {paper_id}",
        "summary": f"Summary of {paper_id}.",
        "comment": None,
        "authors": ("Zoë Ångström",),
        "primary_category": "cs.CV",
        "categories": ("cs.CV",),
        "published": updated,
        "updated": updated,
    }
    values.update(fields)
    return RecordedPaper(**values)  # type: ignore[arg-type]


def get_feed(server: ArxivServer, **params: str) -> etree._Element:
    response = requests.get(server.url, params=params, timeout=5)
    assert response.status_code == 200
    return etree.fromstring(response.content)


def element_layout(element: etree._Element) -> list[str]:
    """List the child tags of an element, with the title of <link> elements."""
    layout = []
    for child in element:
        tag = etree.QName(child).localname
        if tag == "link":
            tag = f"link[{child.get('title') or child.get('rel') or ''}]"
        layout.append(tag)
    return layout


# Search results through the arxiv package


@pytest.mark.parametrize("keyword", reference_keywords())
def test_reference_section_round_trip(
    arxiv_server: ArxivServer,
    reference_papers: dict[str, list[RecordedPaper]],
    keyword: str,
) -> None:
    expected = reference_papers[keyword]
    shuffled = list(expected)
    random.Random(keyword).shuffle(shuffled)
    arxiv_server.add(default_query(keyword), shuffled)

    results = fetch(arxiv_server, default_query(keyword))

    assert short_ids(results) == versioned_ids(expected)
    for result, paper in zip(results, expected, strict=True):
        assert result.entry_id == f"http://arxiv.org/abs/{paper.versioned_id}"
        assert result.updated == paper.updated
        assert result.published == paper.published
        assert normalize(result.title) == paper.title
        assert normalize(result.summary) == paper.summary
        assert normalize(result.comment or "") == (paper.comment or "")
        assert [author.name for author in result.authors] == list(paper.authors)
        assert result.primary_category == paper.primary_category
        assert tuple(result.categories) == paper.categories
        assert result.pdf_url == paper.pdf_url


def test_long_text_is_wrapped(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.add(default_query(KEYWORD), reference_papers[KEYWORD])

    result = fetch(arxiv_server, default_query(KEYWORD))[0]

    # arxiv 4.0.2 collapses whitespace in titles but leaves summaries and
    # comments as sent, so the client under test has to normalise them.
    assert "\n" in result.summary
    assert result.summary.startswith("  ")
    assert result.comment is not None
    assert "\n  " in result.comment


def test_wrap_width_none_sends_text_unchanged(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.wrap_width = None
    paper = reference_papers[KEYWORD][0]
    arxiv_server.add(default_query(KEYWORD), [paper])

    result = fetch(arxiv_server, default_query(KEYWORD))[0]

    assert result.title == paper.title
    assert result.summary == paper.summary
    assert result.comment == paper.comment


def test_paging_with_page_limit(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    expected = reference_papers[KEYWORD]
    arxiv_server.page_limit = 7
    arxiv_server.add(default_query(KEYWORD), expected)

    results = fetch(arxiv_server, default_query(KEYWORD), page_size=100)

    assert short_ids(results) == versioned_ids(expected)
    requests_made = arxiv_server.requests
    assert [params["start"] for params in requests_made] == ["0", "7", "14"]
    assert all(params["max_results"] == "100" for params in requests_made)


def test_max_results_limits_entries(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    expected = reference_papers[KEYWORD]
    arxiv_server.add(default_query(KEYWORD), expected)

    results = fetch(arxiv_server, default_query(KEYWORD), page_size=5, max_results=5)

    assert short_ids(results) == versioned_ids(expected[:5])
    assert len(arxiv_server.requests) == 1


def test_unregistered_query_returns_nothing(arxiv_server: ArxivServer) -> None:
    assert fetch(arxiv_server, default_query("Nothing Registered")) == []
    assert len(arxiv_server.requests) == 1

    feed = get_feed(arxiv_server, search_query="all:nothing")
    assert feed.findtext(f"{OPENSEARCH}totalResults") == "0"
    assert feed.findall(f"{ATOM}entry") == []


def test_special_characters_reach_server(arxiv_server: ArxivServer) -> None:
    keyword = 'Zoë\'s "C++ & C#" (über) 50%+'
    query = default_query(keyword)
    paper = make_paper("2601.00001", datetime(2026, 1, 2, tzinfo=UTC))
    arxiv_server.add(query, [paper])

    results = fetch(arxiv_server, query)

    assert short_ids(results) == ["2601.00001v1"]
    assert arxiv_server.requests[0]["search_query"] == query


def test_text_is_xml_escaped(arxiv_server: ArxivServer) -> None:
    title = 'A <b>bold</b> & "quoted" title with ]]> and &amp; in it'
    summary = "x < y && y > z; 'single' and \"double\" quotes; Zoë Ångström"
    comment = "See <https://example.org/?a=1&b=2>"
    paper = make_paper(
        "2601.00002",
        datetime(2026, 1, 2, tzinfo=UTC),
        title=title,
        summary=summary,
        comment=comment,
        authors=("O'Brien & <Sons>", "Zoë Ångström"),
    )
    arxiv_server.add("all:escaping", [paper])

    result = fetch(arxiv_server, "all:escaping")[0]

    assert normalize(result.title) == title
    assert normalize(result.summary) == summary
    assert normalize(result.comment or "") == comment
    assert [author.name for author in result.authors] == list(paper.authors)


def test_sort_order_and_criteria(arxiv_server: ArxivServer) -> None:
    day = datetime(2026, 1, 5, tzinfo=UTC)
    # The registration order is the relevance order.
    first_updated = make_paper("2601.00010", day, published=day - timedelta(days=3))
    last_updated = make_paper(
        "2601.00011", day + timedelta(hours=2), published=day - timedelta(days=9)
    )
    middle = make_paper("2601.00012", day + timedelta(hours=1))
    arxiv_server.add("all:sorting", [last_updated, first_updated, middle])

    newest_first = fetch(arxiv_server, "all:sorting")
    oldest_first = fetch(
        arxiv_server, "all:sorting", sort_order=arxiv.SortOrder.Ascending
    )
    by_submission = fetch(
        arxiv_server, "all:sorting", sort_by=arxiv.SortCriterion.SubmittedDate
    )
    by_relevance = fetch(
        arxiv_server, "all:sorting", sort_by=arxiv.SortCriterion.Relevance
    )

    assert short_ids(newest_first) == ["2601.00011v1", "2601.00012v1", "2601.00010v1"]
    assert short_ids(oldest_first) == ["2601.00010v1", "2601.00012v1", "2601.00011v1"]
    assert short_ids(by_submission) == ["2601.00012v1", "2601.00010v1", "2601.00011v1"]
    assert short_ids(by_relevance) == ["2601.00011v1", "2601.00010v1", "2601.00012v1"]


def test_id_list_selects_papers(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    papers = reference_papers[KEYWORD]
    arxiv_server.add(default_query(KEYWORD), papers)
    wanted = [papers[3], papers[0]]
    client = make_client(arxiv_server)

    by_ids = list(client.results(arxiv.Search(id_list=[p.paper_id for p in wanted])))
    by_versioned_ids = list(
        client.results(arxiv.Search(id_list=[p.versioned_id for p in wanted]))
    )
    wrong_version = list(
        client.results(arxiv.Search(id_list=[f"{papers[0].paper_id}v99"]))
    )
    narrowed_query = list(
        client.results(
            arxiv.Search(query=default_query(KEYWORD), id_list=[papers[5].paper_id])
        )
    )

    assert short_ids(by_ids) == versioned_ids(wanted)
    assert short_ids(by_versioned_ids) == versioned_ids(wanted)
    assert wrong_version == []
    assert short_ids(narrowed_query) == [papers[5].versioned_id]


def test_results_change_between_runs(arxiv_server: ArxivServer) -> None:
    query = default_query(KEYWORD)
    day_one = [make_paper("2601.00020", datetime(2026, 1, 1, tzinfo=UTC))]
    day_two = [
        make_paper("2601.00021", datetime(2026, 1, 2, tzinfo=UTC)),
        make_paper("2601.00020", datetime(2026, 1, 2, 1, tzinfo=UTC), version=2),
    ]

    arxiv_server.add(query, day_one)
    first_run = fetch(arxiv_server, query)
    arxiv_server.set_papers({query: day_two})
    second_run = fetch(arxiv_server, query)
    arxiv_server.clear()
    third_run = fetch(arxiv_server, query)

    assert short_ids(first_run) == ["2601.00020v1"]
    assert short_ids(second_run) == ["2601.00020v2", "2601.00021v1"]
    assert third_run == []
    assert len(arxiv_server.requests) == 3
    arxiv_server.clear_requests()
    assert arxiv_server.requests == []


# Faults


def test_fail_next_503_raises_http_error(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.add(default_query(KEYWORD), reference_papers[KEYWORD])
    arxiv_server.fail_next(503)

    with pytest.raises(arxiv.HTTPError) as error_info:
        fetch(arxiv_server, default_query(KEYWORD))
    after_fault = fetch(arxiv_server, default_query(KEYWORD))

    assert error_info.value.status == 503
    assert len(after_fault) == 20


def test_fail_next_count_with_retries(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.add(default_query(KEYWORD), reference_papers[KEYWORD])
    arxiv_server.fail_next(503, count=2)

    results = fetch(arxiv_server, default_query(KEYWORD), retries=2)

    assert len(results) == 20
    assert len(arxiv_server.requests) == 3


def test_fail_next_400_sends_error_feed(arxiv_server: ArxivServer) -> None:
    error_feed = RECORDED_ERROR.read_bytes()
    arxiv_server.fail_next(400, error_feed, count=2)

    with pytest.raises(arxiv.HTTPError) as error_info:
        fetch(arxiv_server, "all:anything")
    response = requests.get(arxiv_server.url, timeout=5)

    assert error_info.value.status == 400
    assert response.status_code == 400
    assert response.headers["Content-Type"] == ATOM_CONTENT_TYPE
    assert response.content == error_feed


def test_fail_next_default_body(arxiv_server: ArxivServer) -> None:
    arxiv_server.fail_next(503)

    response = requests.get(arxiv_server.url, timeout=5)

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.text == "503 Service Unavailable\n"


def test_respond_next_raw_sends_body(arxiv_server: ArxivServer) -> None:
    html = b"<!DOCTYPE html><html><body>Rate exceeded.</body></html>"
    truncated = b"<?xml version='1.0' encoding='UTF-8'?>\n<feed xmlns="
    arxiv_server.respond_next_raw(html, content_type="text/html; charset=utf-8")
    arxiv_server.respond_next_raw(truncated)

    html_response = requests.get(arxiv_server.url, timeout=5)
    truncated_response = requests.get(arxiv_server.url, timeout=5)
    normal_response = requests.get(arxiv_server.url, timeout=5)

    assert html_response.status_code == 200
    assert html_response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert html_response.content == html
    assert truncated_response.status_code == 200
    assert truncated_response.headers["Content-Type"] == ATOM_CONTENT_TYPE
    assert truncated_response.content == truncated
    assert normal_response.content.startswith(b"<?xml")


def test_fault_count_must_be_positive(arxiv_server: ArxivServer) -> None:
    with pytest.raises(ValueError, match="count must be at least 1"):
        arxiv_server.fail_next(503, count=0)


# Feed layout compared with recorded responses of the real service


def test_feed_layout_matches_recording(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.add(default_query(KEYWORD), reference_papers[KEYWORD])
    response = requests.get(
        arxiv_server.url,
        params={"search_query": default_query(KEYWORD), "max_results": "10"},
        timeout=5,
    )
    recorded = etree.fromstring(RECORDED_SEARCH.read_bytes())
    recorded_entry = recorded.find(f"{ATOM}entry")
    # Our papers have no journal reference or DOI.
    omitted = {"journal_ref", "doi", "link[doi]"}
    recorded_entry_layout = [
        tag for tag in element_layout(recorded_entry) if tag not in omitted
    ]
    # The first recorded entry and the first served paper both have three authors.
    assert recorded_entry_layout.count("author") == 3

    assert response.status_code == 200
    assert response.headers["Content-Type"] == ATOM_CONTENT_TYPE
    declaration = b"<?xml version='1.0' encoding='UTF-8'?>\n"
    assert response.content.startswith(declaration + b"<feed ")
    feed = etree.fromstring(response.content)
    assert feed.nsmap == recorded.nsmap
    assert element_layout(feed)[:7] == element_layout(recorded)[:7]
    assert feed.findtext(f"{OPENSEARCH}totalResults") == "20"
    assert feed.findtext(f"{OPENSEARCH}startIndex") == "0"
    assert feed.findtext(f"{OPENSEARCH}itemsPerPage") == "10"
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 10
    assert element_layout(entries[0]) == recorded_entry_layout
    assert entries[0].findtext(f"{ATOM}id") == "http://arxiv.org/abs/2601.02927v1"


def test_wrapped_lines_fit_width(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.add(default_query(KEYWORD), reference_papers[KEYWORD])

    feed = get_feed(arxiv_server, search_query=default_query(KEYWORD))

    for entry in feed.iterfind(f"{ATOM}entry"):
        for tag in (f"{ATOM}title", f"{ATOM}summary", f"{ARXIV}comment"):
            for line in (entry.findtext(tag) or "").splitlines():
                assert len(line) <= 80, line


def test_invalid_id_matches_recorded_error(arxiv_server: ArxivServer) -> None:
    response = requests.get(arxiv_server.url, params={"id_list": "abc"}, timeout=5)
    recorded = etree.fromstring(RECORDED_ERROR.read_bytes())

    assert response.status_code == 400
    feed = etree.fromstring(response.content)
    # Only the timestamps may differ from the recorded response.
    for element in (*feed.iter(f"{ATOM}updated"), *recorded.iter(f"{ATOM}updated")):
        element.text = "TIME"
    assert etree.tostring(feed) == etree.tostring(recorded)


@pytest.mark.parametrize(
    "params",
    [
        {"start": "-1"},
        {"max_results": "ten"},
        {"sortBy": "citations"},
        {"sortOrder": "sideways"},
    ],
)
def test_invalid_parameter_gets_400(
    arxiv_server: ArxivServer, params: dict[str, str]
) -> None:
    response = requests.get(arxiv_server.url, params=params, timeout=5)

    assert response.status_code == 400
    feed = etree.fromstring(response.content)
    assert feed.findtext(f"{ATOM}entry/{ATOM}title") == "Error"


def test_unknown_path_gets_404(arxiv_server: ArxivServer) -> None:
    url = arxiv_server.url.replace("/api/query", "/api/other")

    response = requests.get(url, timeout=5)

    assert response.status_code == 404
    assert arxiv_server.requests == [{}]


def test_post_form_works_like_get(
    arxiv_server: ArxivServer, reference_papers: dict[str, list[RecordedPaper]]
) -> None:
    arxiv_server.add(default_query(KEYWORD), reference_papers[KEYWORD])
    params = {"search_query": default_query(KEYWORD), "max_results": "3"}

    response = requests.post(arxiv_server.url, data=params, timeout=5)

    assert response.status_code == 200
    feed = etree.fromstring(response.content)
    assert len(feed.findall(f"{ATOM}entry")) == 3
    assert arxiv_server.requests == [params]


def test_stop_closes_keep_alive_connection() -> None:
    server = ArxivServer()
    server.start()
    with requests.Session() as session:
        response = session.get(server.url, timeout=5)
        assert response.status_code == 200

        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started

    assert elapsed < 2
    assert not any(
        thread.name.startswith("arxiv-server") for thread in threading.enumerate()
    )


def test_recorded_paper_rejects_invalid_values() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="without version suffix"):
        make_paper("2601.00001v2", moment)
    with pytest.raises(ValueError, match="invalid version"):
        make_paper("2601.00001", moment, version=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_paper("2601.00001", moment, published=datetime(2026, 1, 1))


# SMTP fixture


def make_message(recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Daily Papers <digest@example.org>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Neue Papers für Zoë – 3 new"
    message.set_content("Hello Zoë,\n\n3 new papers today.\n")
    return message


def test_smtp_server_receives_message(smtp_server: SmtpServer) -> None:
    message = make_message(["reader@example.org"])

    with smtplib.SMTP(
        smtp_server.host, smtp_server.port, local_hostname="localhost", timeout=5
    ) as client:
        refused = client.send_message(message)

    assert refused == {}
    received = smtp_server.messages
    assert len(received) == 1
    assert received[0].mail_from == "digest@example.org"
    assert received[0].rcpt_tos == ("reader@example.org",)
    assert received[0].message["Subject"] == "Neue Papers für Zoë – 3 new"
    assert received[0].message.get_content() == "Hello Zoë,\n\n3 new papers today.\n"


def test_smtp_rejected_recipient_gets_code(smtp_server: SmtpServer) -> None:
    smtp_server.reject("gone@example.org", "550 5.1.1 mailbox unavailable")
    recipients = ["reader@example.org", "Gone@Example.org"]

    with smtplib.SMTP(
        smtp_server.host, smtp_server.port, local_hostname="localhost", timeout=5
    ) as client:
        refused = client.send_message(make_message(recipients))

    assert refused == {"Gone@Example.org": (550, b"5.1.1 mailbox unavailable")}
    received = smtp_server.messages
    assert len(received) == 1
    assert received[0].rcpt_tos == ("reader@example.org",)


def test_smtp_all_recipients_rejected(smtp_server: SmtpServer) -> None:
    smtp_server.reject("full@example.org", "452 4.2.2 mailbox full")

    with (
        smtplib.SMTP(
            smtp_server.host, smtp_server.port, local_hostname="localhost", timeout=5
        ) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused) as error_info,
    ):
        client.send_message(make_message(["full@example.org"]))

    assert error_info.value.recipients == {
        "full@example.org": (452, b"4.2.2 mailbox full")
    }
    assert smtp_server.messages == []


def test_smtp_reject_needs_error_reply(smtp_server: SmtpServer) -> None:
    with pytest.raises(ValueError, match="invalid SMTP reply"):
        smtp_server.reject("reader@example.org", "250 OK")
