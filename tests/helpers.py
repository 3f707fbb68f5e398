"""Helpers shared by the tests that run `digest` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import yaml
from arxiv_server import ArxivServer, RecordedPaper
from conftest import SmtpServer
from reference import default_query

VAD = "Video Anomaly Detection"
VU = "Video Understanding"
VLM = "Vision Language Model"
MLLM = "Multimodal Large Language Model"


def write_config(path: Path, keywords: list[str], subscribers: list[dict]) -> Path:
    """Write a subscribers file with the given keywords and subscribers."""
    config = {
        "keywords": keywords,
        "max_papers": 100,
        "sender": "Daily Papers <papers@example.org>",
        "subscribers": subscribers,
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def digest_env(
    config: Path,
    data_dir: Path,
    arxiv_url: str,
    smtp: SmtpServer | None = None,
    **extra: str,
) -> dict[str, str]:
    """Return this process's environment with DIGEST_* set for local servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_CONFIG=str(config),
        DIGEST_DATA_DIR=str(data_dir),
        DIGEST_ARXIV_URL=arxiv_url,
        DIGEST_ARXIV_DELAY="0",
        DIGEST_ARXIV_TIMEOUT="5",
    )
    if smtp is not None:
        env.update(
            DIGEST_SMTP_HOST=smtp.host,
            DIGEST_SMTP_PORT=str(smtp.port),
            DIGEST_SMTP_SECURITY="none",
        )
    env.update(extra)
    return env


def run_with_env(
    env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest` with the given environment and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "digest", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_digest(
    tmp_path: Path,
    arxiv: ArxivServer,
    *arguments: str,
    smtp: SmtpServer | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest` with settings pointing at the local servers."""
    env = digest_env(
        tmp_path / "subscribers.yaml",
        tmp_path / "data",
        arxiv.url,
        smtp,
        **(extra_env or {}),
    )
    return run_with_env(env, *arguments)


def run_digest_with_url(
    tmp_path: Path, arxiv_url: str, config: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest` with a given configuration file and arXiv URL."""
    return run_with_env(digest_env(config, tmp_path / "data", arxiv_url), *arguments)


def serve(arxiv: ArxivServer, answers: dict[str, list[RecordedPaper]]) -> None:
    """Make the server return each keyword's papers for its default query."""
    arxiv.set_papers({default_query(k): papers for k, papers in answers.items()})


def paper_ids_in(message: EmailMessage) -> list[str]:
    """Return the versioned arXiv ids linked from a mail's plain-text part."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    return [
        line.removeprefix("Abstract: https://arxiv.org/abs/")
        for line in text.splitlines()
        if line.startswith("Abstract: ")
    ]


def mails_by_recipient(smtp: SmtpServer) -> dict[str, list[EmailMessage]]:
    """Group the received messages by envelope recipient."""
    grouped: dict[str, list[EmailMessage]] = {}
    for received in smtp.messages:
        for recipient in received.rcpt_tos:
            grouped.setdefault(recipient, []).append(received.message)
    return grouped


def new_paper(
    paper_id: str, title: str, like: RecordedPaper, hours: int
) -> RecordedPaper:
    """Return a paper that did not exist before, updated hours after `like`."""
    moment = like.updated + timedelta(hours=hours)
    return replace(
        like,
        paper_id=paper_id,
        version=1,
        title=title,
        published=moment,
        updated=moment,
    )


def two_day_setup(tmp_path, arxiv_server, smtp_server, reference_papers):
    """Baseline day one, then serve day two's results; return the new papers."""
    subscribers = [
        {"email": "alice@example.org", "name": "Alice", "keywords": [VAD, VU]},
        {"email": "bob@example.org", "format": "text"},
        {"email": "zoe@example.org", "name": "Zoë Ångström", "keywords": [VLM]},
    ]
    write_config(tmp_path / "subscribers.yaml", [VAD, VU, VLM, MLLM], subscribers)
    serve(arxiv_server, reference_papers)
    day_one = run_digest(
        tmp_path, arxiv_server, "once", "--date", "2026-01-08", smtp=smtp_server
    )
    assert day_one.returncode == 0, day_one.stderr
    assert smtp_server.messages == []

    newest = reference_papers[VAD][0]
    only_vad = new_paper("2601.09001", "A new anomaly detector", newest, 30)
    vu_and_vlm = new_paper("2601.09002", "Video VLMs {{ at scale }}", newest, 29)
    revised = replace(
        reference_papers[VAD][1],
        version=reference_papers[VAD][1].version + 1,
        summary="A revised abstract.",
        updated=newest.updated + timedelta(hours=28),
    )
    # Known under Video Understanding, listed under the MLLM keyword for the first time.
    moved = reference_papers[VU][-1]
    answers = {
        VAD: [
            only_vad,
            revised,
            *reference_papers[VAD][:1],
            *reference_papers[VAD][2:],
        ],
        VU: [vu_and_vlm, *reference_papers[VU]],
        VLM: [vu_and_vlm, *reference_papers[VLM]],
        MLLM: [*reference_papers[MLLM], moved],
    }
    serve(arxiv_server, answers)
    return {
        "only_vad": only_vad,
        "vu_and_vlm": vu_and_vlm,
        "revised": revised,
        "moved": moved,
    }
