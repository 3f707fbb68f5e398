"""End-to-end runs of `digest once` as a real process against local servers."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import replace

import pytest
from conftest import SmtpServer
from helpers import (
    VAD,
    VU,
    mails_by_recipient,
    new_paper,
    paper_ids_in,
    run_digest,
    serve,
    two_day_setup,
    write_config,
)
from reference import REFERENCE_README, default_query


def test_reference_readme_is_reproduced(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", list(reference_papers), [])
    serve(arxiv_server, reference_papers)

    result = run_digest(
        tmp_path,
        arxiv_server,
        "once",
        "--date",
        "2026-01-09",
        "--readme",
        str(tmp_path / "site" / "README.md"),
    )

    assert result.returncode == 0, result.stderr
    written = (tmp_path / "site" / "README.md").read_text(encoding="utf-8")
    assert written == REFERENCE_README.read_text(encoding="utf-8")
    assert len(arxiv_server.requests) == len(reference_papers)


def test_readme_defaults_to_data_dir(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 0, result.stderr
    readme = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    assert readme.count("| **[") == len(reference_papers[VAD])
    assert "## Video Understanding" not in readme


def test_query_is_sent_as_arxiv_expects(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 0, result.stderr
    [request] = arxiv_server.requests
    assert request["search_query"] == f'ti:"{VAD}" OR abs:"{VAD}"'
    assert request["sortBy"] == "lastUpdatedDate"
    assert request["sortOrder"] == "descending"
    assert request["max_results"] == "100"
    assert request["start"] == "0"


def test_first_run_mails_nobody(tmp_path, arxiv_server, smtp_server, reference_papers):
    subscribers = [{"email": "alice@example.org"}]
    write_config(tmp_path / "subscribers.yaml", [VAD, VU], subscribers)
    serve(arxiv_server, reference_papers)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-08", smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    assert smtp_server.messages == []
    assert "fetched for the first time: 20 papers recorded, mailed to nobody" in (
        result.stderr
    )
    assert "0 new papers, 0 mails sent, 0 failures" in result.stdout


def test_second_day_mails_new_papers(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    papers = two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    mails = mails_by_recipient(smtp_server)
    assert sorted(mails) == ["alice@example.org", "bob@example.org", "zoe@example.org"]
    only_vad = papers["only_vad"].versioned_id
    both = papers["vu_and_vlm"].versioned_id
    moved = papers["moved"].versioned_id
    assert [paper_ids_in(m) for m in mails["alice@example.org"]] == [[only_vad, both]]
    assert [paper_ids_in(m) for m in mails["bob@example.org"]] == [
        [only_vad, both, moved]
    ]
    assert [paper_ids_in(m) for m in mails["zoe@example.org"]] == [[both]]
    assert "3 new papers, 3 mails sent, 0 failures" in result.stdout
    # A pool of up to four connections, the default of DIGEST_SMTP_CONNECTIONS.
    assert len({received.peer for received in smtp_server.messages}) <= 3


def test_one_connection_when_configured(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(
        tmp_path,
        arxiv_server,
        "once",
        "--date",
        "2026-01-09",
        smtp=smtp_server,
        extra_env={"DIGEST_SMTP_CONNECTIONS": "1"},
    )

    assert result.returncode == 0, result.stderr
    assert len(smtp_server.messages) == 3
    assert len({received.peer for received in smtp_server.messages}) == 1


def test_revised_paper_updates_readme_only(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    papers = two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    revised = papers["revised"]
    readme = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    assert f"({revised.abs_url})" in readme
    assert f"{revised.paper_id}v{revised.version - 1})" not in readme
    assert "A revised abstract." in readme
    assert readme.count(f"abs/{revised.paper_id}v") == 1
    sent = b"".join(received.data for received in smtp_server.messages)
    assert revised.paper_id.encode() not in sent


def test_rerun_same_date_mails_nobody_twice(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    papers = two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    first = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )
    assert first.returncode == 0, first.stderr
    received_first = len(smtp_server.messages)

    second = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert second.returncode == 0, second.stderr
    assert len(smtp_server.messages) == received_first
    assert "0 new papers, 0 mails sent" in second.stdout

    later = new_paper("2601.09003", "Found by the third run", papers["only_vad"], 1)
    arxiv_server.add(default_query(VAD), [later, *reference_papers[VAD]])
    third = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert third.returncode == 0, third.stderr
    new_mails = mails_by_recipient(smtp_server)
    assert [paper_ids_in(m) for m in new_mails["alice@example.org"]][1:] == [
        [later.versioned_id]
    ]
    assert [paper_ids_in(m) for m in new_mails["bob@example.org"]][1:] == [
        [later.versioned_id]
    ]
    assert len(new_mails["zoe@example.org"]) == 1


def test_mail_headers_and_parts(tmp_path, arxiv_server, smtp_server, reference_papers):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    by_recipient = {r.rcpt_tos[0]: r for r in smtp_server.messages}
    zoe = by_recipient["zoe@example.org"]
    assert zoe.mail_from == "papers@example.org"
    assert zoe.message["Subject"] == "Daily Papers 2026-01-09: 1 new paper"
    assert str(zoe.message["To"]) == "Zoë Ångström <zoe@example.org>"
    raw_to = next(line for line in zoe.data.splitlines() if line.startswith(b"To:"))
    assert raw_to.isascii()
    assert b"=?utf-8?" in raw_to.lower()
    assert zoe.message["Date"] is not None
    assert zoe.message["Message-ID"].endswith("@example.org>")
    assert (
        zoe.message["List-Unsubscribe"]
        == "<mailto:papers@example.org?subject=unsubscribe>"
    )
    assert zoe.message.get_content_type() == "multipart/alternative"
    html = zoe.message.get_body(preferencelist=("html",)).get_content()
    assert "Video VLMs {{ at scale }}" in html
    assert "<style" not in html
    assert 'style="' in html
    bob = by_recipient["bob@example.org"]
    assert bob.message["Subject"] == "Daily Papers 2026-01-09: 3 new papers"
    assert bob.message.get_content_type() == "text/plain"


def test_digest_files_are_archived(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    papers = two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    markdown = (tmp_path / "data" / "digests" / "2026-01-09.md").read_text("utf-8")
    html = (tmp_path / "data" / "digests" / "2026-01-09.html").read_text("utf-8")
    for paper in (papers["only_vad"], papers["vu_and_vlm"], papers["moved"]):
        assert paper.abs_url in markdown
        assert paper.abs_url in html
    assert papers["revised"].paper_id not in markdown


def test_outbox_without_smtp_host(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 0, result.stderr
    outbox = tmp_path / "data" / "outbox" / "2026-01-09"
    names = sorted(path.name for path in outbox.iterdir())
    assert names == [
        "alice@example.org.eml",
        "bob@example.org.eml",
        "zoe@example.org.eml",
    ]
    assert (
        b"Subject: Daily Papers 2026-01-09: 2 new papers"
        in (outbox / "alice@example.org.eml").read_bytes()
    )


def test_failed_keyword_does_not_stop_others(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD, VU], [])
    serve(arxiv_server, reference_papers)
    arxiv_server.fail_next(503, count=4)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 1
    assert (
        "keyword 'Video Anomaly Detection': HTTP 503 after 4 attempts" in result.stderr
    )
    assert "Traceback" not in result.stderr
    readme = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    assert readme.count("| **[") == len(reference_papers[VU])
    assert "1 keyword fetched" in result.stdout


def test_rejected_recipient_is_recorded(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    smtp_server.reject("alice@example.org", "550 5.1.1 mailbox unavailable")

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )

    assert result.returncode == 1
    assert "mail to alice@example.org rejected: 550 5.1.1 mailbox unavailable" in (
        result.stderr
    )
    assert sorted(mails_by_recipient(smtp_server)) == [
        "bob@example.org",
        "zoe@example.org",
    ]
    store = json.loads((tmp_path / "data" / "store.json").read_text("utf-8"))
    statuses = {d["email"]: d["status"] for d in store["deliveries"].values()}
    assert statuses == {
        "alice@example.org": "failed",
        "bob@example.org": "sent",
        "zoe@example.org": "sent",
    }


def test_unreachable_smtp_marks_nothing(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    closed = SmtpServer(host="127.0.0.1", port=9, handler=smtp_server.handler)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=closed
    )

    assert result.returncode == 1
    assert "mail server 127.0.0.1:9: cannot connect" in result.stderr
    assert "Traceback" not in result.stderr
    store = json.loads((tmp_path / "data" / "store.json").read_text("utf-8"))
    assert store.get("deliveries", {}) == {}

    retry = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-09", smtp=smtp_server
    )
    assert retry.returncode == 0, retry.stderr
    assert len(smtp_server.messages) == 3


@pytest.mark.parametrize(
    "keyword",
    ['C++ "fast" & (robust) #1 über', "a+b=c", "Ünïcödé 学习"],
)
def test_keyword_reaches_api_intact(tmp_path, arxiv_server, keyword):
    write_config(tmp_path / "subscribers.yaml", [keyword], [])

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 0, result.stderr
    [request] = arxiv_server.requests
    phrase = " ".join(keyword.replace('"', " ").split())
    assert request["search_query"] == f'ti:"{phrase}" OR abs:"{phrase}"'
    heading = "## " + keyword.replace("&", "&amp;") + "\n"
    assert heading in (tmp_path / "data" / "README.md").read_text("utf-8")


@pytest.mark.parametrize(
    "make_readme",
    [
        lambda tmp_path: tmp_path,
        lambda tmp_path: tmp_path / "subscribers.yaml" / "README.md",
    ],
    ids=["directory", "under-a-file"],
)
def test_unusable_readme_path_stops_early(
    tmp_path, arxiv_server, reference_papers, make_readme
):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)

    result = run_digest(
        tmp_path, arxiv_server, "once", "--readme", str(make_readme(tmp_path))
    )

    assert result.returncode == 2
    assert result.stderr.startswith("digest: error: --readme: ")
    assert result.stderr.count("\n") == 1
    assert arxiv_server.requests == []


def test_unusable_outbox_keeps_mails_pending(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    (tmp_path / "data" / "outbox").write_text("not a directory", encoding="utf-8")

    blocked = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")
    (tmp_path / "data" / "outbox").unlink()
    retried = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert blocked.returncode == 1
    assert "cannot create it" in blocked.stderr
    assert "3 mails left pending" in blocked.stderr
    assert "Traceback" not in blocked.stderr
    assert retried.returncode == 0, retried.stderr
    assert len(list((tmp_path / "data" / "outbox" / "2026-01-09").iterdir())) == 3


def test_outbox_mail_to_unicode_address_parses(
    tmp_path, arxiv_server, reference_papers
):
    subscribers = [{"email": "bøb@exämple.org", "name": "Bøb"}]
    write_config(tmp_path / "subscribers.yaml", [VAD], subscribers)
    serve(arxiv_server, {VAD: reference_papers[VAD][1:]})
    run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-08")
    serve(arxiv_server, reference_papers)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 0, result.stderr
    [path] = (tmp_path / "data" / "outbox" / "2026-01-09").iterdir()
    # RFC 6532 headers are UTF-8 text, which the parser reads from a str.
    text = path.read_bytes().decode("utf-8")
    message = email.message_from_string(text, policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "bøb@exämple.org"
    raw_to = next(line for line in text.splitlines() if line.startswith("To:"))
    assert raw_to.endswith("<bøb@exämple.org>")
    assert message["To"].addresses[0].display_name == "Bøb"


def test_published_files_are_world_readable(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 0, result.stderr
    data = tmp_path / "data"
    for path in (data / "README.md", data / "digests" / "2026-01-09.md"):
        assert path.stat().st_mode & 0o777 == 0o644
    assert (data / "store.json").stat().st_mode & 0o777 == 0o600


def test_readme_kept_when_every_keyword_fails(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)
    first = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-08")
    assert first.returncode == 0, first.stderr
    arxiv_server.fail_next(503, count=4)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 1
    readme = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    assert "Last update: 2026-01-08\n" in readme
    assert "README left unchanged: no keyword was fetched" in result.stderr


def test_failed_keyword_keeps_its_papers(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD, VU], [])
    serve(arxiv_server, reference_papers)
    first = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-08")
    assert first.returncode == 0, first.stderr
    store_path = tmp_path / "data" / "store.json"

    def papers_of_vad():
        papers = json.loads(store_path.read_text("utf-8"))["papers"].values()
        return sorted(
            (p["paper_id"], p["version"], p["summary"])
            for p in papers
            if VAD in p["keywords"]
        )

    before = papers_of_vad()
    revised = replace(reference_papers[VAD][0], version=9, summary="Changed.")
    serve(arxiv_server, {VAD: [revised], VU: reference_papers[VU]})
    arxiv_server.fail_next(503, count=4)

    result = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert result.returncode == 1
    assert papers_of_vad() == before
    readme = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    assert readme.count("| **[") == len(reference_papers[VAD]) + len(
        reference_papers[VU]
    )
