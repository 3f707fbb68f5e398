"""A daily run killed with SIGKILL at many moments loses nothing on the rerun.

Each case starts `digest once` as a real process and kills it at one moment
between start-up and the end of sending. It then checks that the store still
loads with every paper it had. A rerun of the same date must complete and mail
each subscriber exactly the papers they were due. Only mails
accepted just before the kill and not yet recorded, at most one per SMTP
connection, may reach their subscribers twice.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import (
    MLLM,
    VAD,
    VLM,
    VU,
    digest_env,
    paper_ids_in,
    serve,
    write_config,
)

from digest.store import STORE_FILE, Store

KILL_MOMENTS = 24
# Mails sent at once; each may be accepted but unrecorded when the kill comes.
CONNECTIONS = 2
SUBSCRIBERS = [
    {"email": f"reader{number}@example.org", "keywords": keywords}
    for number, keywords in enumerate(
        [[VAD], [VU], [VLM], [MLLM], [VAD, VU], [VLM, MLLM], [VU, VLM]], start=1
    )
] + [{"email": "everything@example.org"}]


def crash_env(data_dir: Path, config: Path, arxiv_url: str, smtp) -> dict[str, str]:
    return digest_env(
        config,
        data_dir,
        arxiv_url,
        smtp,
        # Spread the fetch and the sending so that kills land in every phase.
        DIGEST_ARXIV_DELAY="0.1",
        DIGEST_SMTP_CONNECTIONS=str(CONNECTIONS),
    )


def run_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "digest", "once", "--date", "2026-01-09"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def stored_paper_ids(data_dir: Path) -> set[str]:
    store = Store.open(data_dir)
    try:
        return {doc["paper_id"] for doc in store.papers.all()}
    finally:
        store.close()


def delivered_by_mail(messages) -> dict[str, list[list[str]]]:
    """Return, per recipient, the paper ids of each mail received."""
    mails: dict[str, list[list[str]]] = {}
    for received in messages:
        mails.setdefault(received.rcpt_tos[0], []).append(
            paper_ids_in(received.message)
        )
    return mails


@pytest.fixture
def day_two(tmp_path, arxiv_server, smtp_server, reference_papers):
    """Baseline day one in a template data dir; serve day two; return the setup."""
    config = write_config(
        tmp_path / "subscribers.yaml", [VAD, VU, VLM, MLLM], SUBSCRIBERS
    )
    serve(arxiv_server, {k: papers[3:] for k, papers in reference_papers.items()})
    template = tmp_path / "template"
    env = crash_env(template, config, arxiv_server.url, smtp_server)
    baseline = subprocess.run(
        [sys.executable, "-m", "digest", "once", "--date", "2026-01-08"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert baseline.returncode == 0, baseline.stderr
    serve(arxiv_server, reference_papers)
    return config, template


def test_clean_run_mails_due_papers(tmp_path, day_two, arxiv_server, smtp_server):
    config, template = day_two
    shutil.copytree(template, tmp_path / "clean")

    result = run_once(
        crash_env(tmp_path / "clean", config, arxiv_server.url, smtp_server)
    )

    assert result.returncode == 0, result.stderr
    assert len(smtp_server.messages) == len(SUBSCRIBERS)


@pytest.mark.timeout(300)
def test_kill_at_any_moment_loses_nothing(tmp_path, day_two, arxiv_server, smtp_server):
    config, template = day_two
    smtp_server.handler.delay_s = 0.05
    baseline_ids = stored_paper_ids(template)

    # A clean run gives the papers each subscriber is due, and when sending
    # starts and ends, so that half the kills land before it and half during it.
    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    first_s, last_s = time_clean_run(
        crash_env(clean, config, arxiv_server.url, smtp_server), smtp_server
    )
    due = {
        address: sorted(ids[0])
        for address, ids in delivered_by_mail(smtp_server.messages).items()
    }
    assert len(due) == len(SUBSCRIBERS)

    phases = Counter()
    for moment in range(KILL_MOMENTS):
        data_dir = tmp_path / f"kill-{moment}"
        shutil.copytree(template, data_dir)
        env = crash_env(data_dir, config, arxiv_server.url, smtp_server)
        first_message = len(smtp_server.messages)

        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "once", "--date", "2026-01-09"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(kill_moment(moment, first_s, last_s))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        json.loads((data_dir / STORE_FILE).read_text(encoding="utf-8"))
        assert baseline_ids <= stored_paper_ids(data_dir), f"kill {moment}"
        killed_mails = len(smtp_server.messages) - first_message
        phases[phase_of(data_dir, killed_mails)] += 1

        rerun = run_once(env)
        assert rerun.returncode == 0, f"kill {moment}: {rerun.stderr}"
        mails = delivered_by_mail(smtp_server.messages[first_message:])
        repeated = 0
        for address, due_ids in due.items():
            received = [i for ids in mails.get(address, []) for i in ids]
            assert sorted(set(received)) == due_ids, f"kill {moment}: {address}"
            repeated += len(received) - len(set(received))
        max_ids = max(len(ids) for ids in due.values())
        assert repeated <= CONNECTIONS * max_ids, f"kill {moment}"
        assert sum(len(m) for m in mails.values()) <= len(SUBSCRIBERS) + CONNECTIONS

    assert phases["before sending"] >= 3, phases
    assert phases["while sending"] >= 3, phases


def time_clean_run(env: dict[str, str], smtp) -> tuple[float, float]:
    """Run once to the end; return when the first and the last mail arrived."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "once", "--date", "2026-01-09"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    arrivals: list[float] = []
    while process.poll() is None or len(arrivals) < len(smtp.messages):
        while len(arrivals) < len(smtp.messages):
            arrivals.append(time.monotonic() - started)
        time.sleep(0.005)
    assert process.returncode == 0
    assert len(arrivals) == len(SUBSCRIBERS)
    return arrivals[0], arrivals[-1]


def kill_moment(moment: int, first_s: float, last_s: float) -> float:
    """Return the delay of the given kill: half before sending, half during it."""
    half = KILL_MOMENTS // 2
    if moment < half:
        return first_s * (moment + 0.5) / half
    return first_s + (last_s - first_s) * (moment - half + 0.5) / (KILL_MOMENTS - half)


def phase_of(data_dir: Path, killed_mails: int) -> str:
    """Name the phase a kill interrupted, from what it left behind."""
    if killed_mails == 0:
        return "before sending"
    store = json.loads((data_dir / STORE_FILE).read_text(encoding="utf-8"))
    if len(store.get("runs", {})) > 1:
        return "after the run"
    return "while sending"
