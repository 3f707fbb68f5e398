"""The operator commands (resend, preview, check, history, readme) run as real
processes against the local arXiv and SMTP servers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from arxiv_server import RecordedPaper
from conftest import SMTP_HOST, SmtpServer
from helpers import (
    MLLM,
    VAD,
    VLM,
    VU,
    mails_by_recipient,
    paper_ids_in,
    run_digest,
    two_day_setup,
    write_config,
)

import digest

DAY_ONE = "2026-01-08"
DAY_TWO = "2026-01-09"
SUBSCRIBERS = ["alice@example.org", "bob@example.org", "zoe@example.org"]
SMTP_PASSWORD = "pw-7f3a9c-must-not-be-printed"
COMMANDS = ["once", "run", "resend", "preview", "check", "history", "readme", "health"]


def run_without_settings(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest` with no DIGEST_* variable, for --help and --version."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.run(
        [sys.executable, "-m", "digest", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ids_by_recipient(smtp: SmtpServer) -> dict[str, list[list[str]]]:
    """Return the paper ids of each received mail, grouped by recipient."""
    return {
        address: [paper_ids_in(message) for message in messages]
        for address, messages in mails_by_recipient(smtp).items()
    }


def versioned_ids(*papers: RecordedPaper) -> list[str]:
    return [paper.versioned_id for paper in papers]


def read_deliveries(tmp_path: Path) -> list[dict]:
    store = json.loads((tmp_path / "data" / "store.json").read_text("utf-8"))
    return list(store.get("deliveries", {}).values())


def write_three_subscribers(tmp_path: Path) -> None:
    """Write the subscribers file of helpers.two_day_setup, without running anything."""
    subscribers = [
        {"email": "alice@example.org", "name": "Alice", "keywords": [VAD, VU]},
        {"email": "bob@example.org", "format": "text"},
        {"email": "zoe@example.org", "name": "Zoë Ångström", "keywords": [VLM]},
    ]
    write_config(tmp_path / "subscribers.yaml", [VAD, VU, VLM, MLLM], subscribers)


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Assert that stderr is one `digest: error:` line without a traceback.

    Returns the line, for the caller to check its content.
    """
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("digest: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def day_two(
    tmp_path, arxiv_server, smtp_server, reference_papers
) -> dict[str, RecordedPaper]:
    """Run the baseline of 2026-01-08 and the mails of 2026-01-09; return new papers."""
    papers = two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    result = run_digest(
        tmp_path, arxiv_server, "once", "--date", DAY_TWO, smtp=smtp_server
    )
    assert result.returncode == 0, result.stderr
    return papers


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that is bound but not listening, so connections are refused."""
    with socket.socket() as bound:
        bound.bind((SMTP_HOST, 0))
        yield bound.getsockname()[1]


@pytest.fixture
def idle_listener() -> Iterator[socket.socket]:
    """A listening local socket that never accepts, to detect connection attempts."""
    with socket.socket() as listener:
        listener.bind((SMTP_HOST, 0))
        listener.listen()
        listener.setblocking(False)
        yield listener


def test_resend_mails_same_papers_again(tmp_path, arxiv_server, smtp_server, day_two):
    first_ids = ids_by_recipient(smtp_server)
    requests_before = len(arxiv_server.requests)

    result = run_digest(
        tmp_path, arxiv_server, "resend", "--date", DAY_TWO, smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{DAY_TWO}: 3 mails resent, 0 failures"]
    assert len(arxiv_server.requests) == requests_before
    resent_ids = ids_by_recipient(smtp_server)
    assert sorted(resent_ids) == SUBSCRIBERS
    for address in SUBSCRIBERS:
        [original] = first_ids[address]
        assert resent_ids[address] == [original, original]
    by_recipient = mails_by_recipient(smtp_server)
    for address in SUBSCRIBERS:
        [original, resent] = by_recipient[address]
        assert resent["Subject"] == original["Subject"]
        assert resent.get_content_type() == original.get_content_type()


def test_resend_is_recorded_as_resend(tmp_path, arxiv_server, smtp_server, day_two):
    result = run_digest(
        tmp_path, arxiv_server, "resend", "--date", DAY_TWO, smtp=smtp_server
    )

    assert result.returncode == 0, result.stderr
    deliveries = read_deliveries(tmp_path)
    resends = [d for d in deliveries if d["kind"] == "resend"]
    dailies = [d for d in deliveries if d["kind"] == "daily"]
    assert sorted(d["email"] for d in resends) == SUBSCRIBERS
    assert sorted(d["email"] for d in dailies) == SUBSCRIBERS
    assert {d["date"] for d in resends} == {DAY_TWO}
    assert {d["status"] for d in resends} == {"sent"}
    papers_of_daily = {d["email"]: d["paper_ids"] for d in dailies}
    papers_of_resend = {d["email"]: d["paper_ids"] for d in resends}
    assert papers_of_resend == papers_of_daily


@pytest.mark.parametrize(
    ("chosen", "summary"),
    [
        pytest.param(
            ["alice@example.org"], "1 mail resent, 0 failures", id="one-address"
        ),
        pytest.param(
            ["alice@example.org", "zoe@example.org"],
            "2 mails resent, 0 failures",
            id="two-addresses",
        ),
        pytest.param(
            ["alice@example.org", "Alice@Example.org"],
            "1 mail resent, 0 failures",
            id="same-address-twice",
        ),
    ],
)
def test_resend_to_chosen_subscribers(
    tmp_path, arxiv_server, smtp_server, day_two, chosen, summary
):
    first_ids = ids_by_recipient(smtp_server)
    options = [item for address in chosen for item in ("--to", address)]

    result = run_digest(
        tmp_path,
        arxiv_server,
        "resend",
        "--date",
        DAY_TWO,
        *options,
        smtp=smtp_server,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{DAY_TWO}: {summary}"]
    resent_ids = ids_by_recipient(smtp_server)
    chosen = sorted({address.lower() for address in chosen})
    for address in chosen:
        assert resent_ids[address] == first_ids[address] * 2
    for address in sorted(set(SUBSCRIBERS) - set(chosen)):
        assert resent_ids[address] == first_ids[address]


def test_resend_failed_sends_pending_mails(
    tmp_path, arxiv_server, smtp_server, closed_port, reference_papers
):
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    unreachable = SmtpServer(
        host=SMTP_HOST, port=closed_port, handler=smtp_server.handler
    )
    day_run = run_digest(
        tmp_path, arxiv_server, "once", "--date", DAY_TWO, smtp=unreachable
    )
    assert day_run.returncode == 1
    before = run_digest(tmp_path, arxiv_server, "history")
    assert f"{DAY_TWO}: 3 new papers, 0 sent, 0 failed, 3 pending" in before.stdout

    result = run_digest(
        tmp_path,
        arxiv_server,
        "resend",
        "--date",
        DAY_TWO,
        "--failed",
        smtp=smtp_server,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{DAY_TWO}: 3 mails resent, 0 failures"]
    assert sorted(ids_by_recipient(smtp_server)) == sorted(SUBSCRIBERS)
    after = run_digest(tmp_path, arxiv_server, "history")
    assert f"{DAY_TWO}: 3 new papers, 3 sent, 0 failed, 0 pending" in after.stdout


def test_resend_failed_mails_only_failed(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    papers = two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)
    smtp_server.reject("alice@example.org", "550 5.1.1 mailbox unavailable")
    day_run = run_digest(
        tmp_path, arxiv_server, "once", "--date", DAY_TWO, smtp=smtp_server
    )
    assert day_run.returncode == 1
    before = run_digest(tmp_path, arxiv_server, "history")
    assert f"{DAY_TWO}: 3 new papers, 2 sent, 1 failed, 0 pending" in before.stdout

    still_rejected = run_digest(
        tmp_path,
        arxiv_server,
        "resend",
        "--date",
        DAY_TWO,
        "--failed",
        smtp=smtp_server,
    )
    assert still_rejected.returncode == 1
    assert f"{DAY_TWO}: 0 mails resent, 1 failure" in still_rejected.stdout

    smtp_server.accept("alice@example.org")
    received_before = len(smtp_server.messages)
    result = run_digest(
        tmp_path,
        arxiv_server,
        "resend",
        "--date",
        DAY_TWO,
        "--failed",
        smtp=smtp_server,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{DAY_TWO}: 1 mail resent, 0 failures"]
    due = versioned_ids(papers["only_vad"], papers["vu_and_vlm"])
    resent = smtp_server.messages[received_before:]
    assert [r.rcpt_tos for r in resent] == [("alice@example.org",)]
    assert paper_ids_in(resent[0].message) == due
    history = run_digest(tmp_path, arxiv_server, "history")
    assert history.returncode == 0, history.stderr
    assert f"{DAY_TWO}: 3 new papers, 3 sent, 0 failed, 0 pending" in history.stdout


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        pytest.param(
            ["--date", "2025-01-01"],
            "no digest archived for 2025-01-01",
            id="unknown-date",
        ),
        pytest.param(
            ["--date", DAY_ONE, "--to", "eve@example.org"],
            "--to: eve@example.org is not a subscriber",
            id="not-a-subscriber",
        ),
        pytest.param(
            ["--date", DAY_ONE, "--to", "zoe@example.org"],
            f"--to: zoe@example.org had no papers in the digest of {DAY_ONE}",
            id="subscriber-not-due",
        ),
        pytest.param(
            ["--date", DAY_ONE, "--to", "not-an-address"],
            "--to: invalid address 'not-an-address'",
            id="invalid-address",
        ),
    ],
)
def test_resend_rejects_unknown_target(
    tmp_path, arxiv_server, smtp_server, reference_papers, arguments, fragment
):
    # The baseline day alone archives a digest that nobody is due.
    two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers)

    result = run_digest(tmp_path, arxiv_server, "resend", *arguments, smtp=smtp_server)

    assert result.returncode == 2
    line = assert_one_error_line(result)
    assert fragment in line
    assert result.stdout == ""
    assert smtp_server.messages == []


def test_preview_prints_subscriber_text_digest(
    tmp_path, arxiv_server, smtp_server, day_two
):
    requests_before = len(arxiv_server.requests)

    result = run_digest(
        tmp_path,
        arxiv_server,
        "preview",
        "--to",
        "zoe@example.org",
        "--format",
        "text",
        "--date",
        DAY_TWO,
    )

    assert result.returncode == 0, result.stderr
    assert "Hello Zoë Ångström" in result.stdout
    assert f"== {VLM} (1) ==" in result.stdout
    assert day_two["vu_and_vlm"].abs_url in result.stdout
    assert day_two["only_vad"].abs_url not in result.stdout
    [mail] = mails_by_recipient(smtp_server)["zoe@example.org"]
    assert result.stdout == mail.get_body(preferencelist=("plain",)).get_content()
    assert len(arxiv_server.requests) == requests_before


def test_preview_writes_html_file(tmp_path, arxiv_server, smtp_server, day_two):
    output = tmp_path / "preview.html"

    result = run_digest(
        tmp_path,
        arxiv_server,
        "preview",
        "--format",
        "html",
        "--output",
        str(output),
        "--date",
        DAY_TWO,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"preview written to {output}\n"
    html = output.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "<style" not in html
    assert 'style="' in html
    for key in ("only_vad", "vu_and_vlm", "moved"):
        assert day_two[key].abs_url in html
    headings = re.findall(r">([^<>]+)</h2>", html)
    # A paper new under two keywords is listed once, under the first of them.
    assert headings == [f"{VAD} (1)", f"{VU} (1)", f"{MLLM} (1)"]


@pytest.mark.parametrize("kind", ["text", "html"])
def test_preview_defaults_to_latest_date(
    tmp_path, arxiv_server, smtp_server, day_two, kind
):
    dated = run_digest(
        tmp_path, arxiv_server, "preview", "--format", kind, "--date", DAY_TWO
    )

    result = run_digest(tmp_path, arxiv_server, "preview", "--format", kind)

    assert result.returncode == 0, result.stderr
    assert f"Daily Papers, {DAY_TWO}" in result.stdout
    assert result.stdout == dated.stdout


def test_preview_empty_data_dir_exits_2(tmp_path, arxiv_server, smtp_server):
    write_config(tmp_path / "subscribers.yaml", [VAD], [{"email": "alice@example.org"}])

    result = run_digest(tmp_path, arxiv_server, "preview")

    assert result.returncode == 2
    line = assert_one_error_line(result)
    assert "no digest archived yet" in line
    assert result.stdout == ""


def test_check_lists_without_contacting(
    tmp_path, arxiv_server, smtp_server, idle_listener
):
    write_three_subscribers(tmp_path)
    port = idle_listener.getsockname()[1]
    listener = SmtpServer(host=SMTP_HOST, port=port, handler=smtp_server.handler)

    result = run_digest(tmp_path, arxiv_server, "check", smtp=listener)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "keywords (4):" in lines
    for name in (VAD, VU, VLM, MLLM):
        assert f'  {name}: ti:"{name}" OR abs:"{name}"' in lines
    assert "subscribers (3):" in lines
    assert f"  alice@example.org (html): {VAD}, {VU}" in lines
    assert f"  bob@example.org (text): {VAD}, {VU}, {VLM}, {MLLM}" in lines
    assert f"  zoe@example.org (html): {VLM}" in lines
    assert f"mail server: {SMTP_HOST}:{port} (not contacted)" in lines
    assert arxiv_server.requests == []
    with pytest.raises(BlockingIOError):
        idle_listener.accept()
    assert not (tmp_path / "data").exists()


def test_check_smtp_connects(tmp_path, arxiv_server, smtp_server):
    write_three_subscribers(tmp_path)

    result = run_digest(
        tmp_path,
        arxiv_server,
        "check",
        "--smtp",
        smtp=smtp_server,
        extra_env={"DIGEST_SMTP_PASSWORD": SMTP_PASSWORD},
    )

    assert result.returncode == 0, result.stderr
    assert f"mail server {SMTP_HOST}:{smtp_server.port}: connected" in result.stdout
    assert SMTP_PASSWORD not in result.stdout
    assert SMTP_PASSWORD not in result.stderr
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("use_closed_port", "extra_env", "fragment"),
    [
        pytest.param(True, {}, "cannot connect", id="closed-port"),
        pytest.param(
            False,
            {"DIGEST_SMTP_USERNAME": "papers"},
            "SMTP AUTH extension is not supported",
            id="login-not-offered",
        ),
    ],
)
def test_check_smtp_failure_exits_1(
    tmp_path,
    arxiv_server,
    smtp_server,
    closed_port,
    use_closed_port,
    extra_env,
    fragment,
):
    write_three_subscribers(tmp_path)
    port = closed_port if use_closed_port else smtp_server.port
    server = SmtpServer(host=SMTP_HOST, port=port, handler=smtp_server.handler)

    result = run_digest(
        tmp_path,
        arxiv_server,
        "check",
        "--smtp",
        smtp=server,
        extra_env={"DIGEST_SMTP_PASSWORD": SMTP_PASSWORD, **extra_env},
    )

    assert result.returncode == 1
    line = assert_one_error_line(result)
    assert line.startswith(f"digest: error: mail server {SMTP_HOST}:{port}: ")
    assert fragment in line
    assert SMTP_PASSWORD not in result.stdout
    assert SMTP_PASSWORD not in result.stderr


def test_history_lists_each_date(tmp_path, arxiv_server, smtp_server, day_two):
    requests_before = len(arxiv_server.requests)

    result = run_digest(tmp_path, arxiv_server, "history")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{DAY_TWO}: 3 new papers, 3 sent, 0 failed, 0 pending",
        f"{DAY_ONE}: 0 new papers, 0 sent, 0 failed, 0 pending",
    ]
    assert len(arxiv_server.requests) == requests_before


def test_history_of_empty_data_dir(tmp_path, arxiv_server, smtp_server):
    write_config(tmp_path / "subscribers.yaml", [VAD], [{"email": "alice@example.org"}])

    result = run_digest(tmp_path, arxiv_server, "history")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "no digest archived yet\n"


def test_readme_rebuilds_identical_file(tmp_path, arxiv_server, smtp_server, day_two):
    readme = tmp_path / "data" / "README.md"
    written_by_run = readme.read_bytes()
    readme.unlink()
    requests_before = len(arxiv_server.requests)

    result = run_digest(tmp_path, arxiv_server, "readme")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"README written to {readme}\n"
    assert readme.read_bytes() == written_by_run
    assert len(arxiv_server.requests) == requests_before


def test_readme_writes_output_path(tmp_path, arxiv_server, smtp_server, day_two):
    output = tmp_path / "site" / "README.md"

    result = run_digest(tmp_path, arxiv_server, "readme", "--output", str(output))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"README written to {output}\n"
    assert output.read_bytes() == (tmp_path / "data" / "README.md").read_bytes()


def test_readme_of_empty_data_dir_fails(tmp_path, arxiv_server, smtp_server):
    write_config(tmp_path / "subscribers.yaml", [VAD], [{"email": "alice@example.org"}])

    result = run_digest(tmp_path, arxiv_server, "readme")

    assert result.returncode == 2
    line = assert_one_error_line(result)
    assert "no digest archived yet" in line
    assert not (tmp_path / "data" / "README.md").exists()
    assert arxiv_server.requests == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_shows_example(command):
    result = run_without_settings(command, "--help")

    assert result.returncode == 0, result.stderr
    assert "example: digest " in result.stdout


def test_version_prints_version():
    result = run_without_settings("--version")

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"digest \d+\.\d+\.\d+\S*\n", result.stdout)
    assert result.stdout == f"digest {digest.__version__}\n"
