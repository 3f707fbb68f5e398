"""The offline replay server that README.md offers for a first try."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from helpers import run_digest_with_url

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_replay(port: int, *arguments: str) -> subprocess.Popen[str]:
    replay = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "arxiv_replay.py"), "--port", str(port)]
        + list(arguments),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert replay.stdout is not None
    assert replay.stdout.readline().startswith("DIGEST_ARXIV_URL=http://127.0.0.1:")
    return replay


def test_replay_gives_two_days_of_sample(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/query"
    config = ROOT / "subscribers.yaml"

    yesterday = start_replay(port, "--hold-back", "3")
    try:
        first = run_digest_with_url(
            tmp_path, url, config, "once", "--date", "2026-01-08"
        )
    finally:
        yesterday.terminate()
        yesterday.communicate(timeout=10)
    today = start_replay(port)
    try:
        second = run_digest_with_url(
            tmp_path, url, config, "once", "--date", "2026-01-09"
        )
    finally:
        today.terminate()
        today.communicate(timeout=10)

    assert first.returncode == 0, first.stderr
    assert "4 keywords fetched, 0 new papers" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "4 keywords fetched, 12 new papers, 2 mails sent" in second.stdout
    outbox = tmp_path / "data" / "outbox" / "2026-01-09"
    assert sorted(p.name for p in outbox.iterdir()) == [
        "alice@example.org.eml",
        "bob@example.org.eml",
    ]
