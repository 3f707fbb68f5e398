#!/usr/bin/env python3
"""Build the image and prove it works: a daily run, mail, README, clean stop.

Needs a running Docker engine. The container uses the host network to reach
the local arXiv API stand-in and SMTP server this script starts on 127.0.0.1.
Prints one line per check and the image size; exits 1 on the first failure.
"""

from __future__ import annotations

import email
import email.policy
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from aiosmtpd.controller import Controller  # noqa: E402
from arxiv_server import ArxivServer  # noqa: E402
from reference import default_query, load_reference  # noqa: E402

IMAGE = "daily-papers-digest:smoke"
KEYWORD = "Video Anomaly Detection"
STOP_LIMIT_S = 5.0


class Inbox:
    """aiosmtpd handler that keeps every received message."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        data = envelope.original_content or b""
        self.messages.append(
            email.message_from_bytes(data, policy=email.policy.default)
        )
        return "250 OK"


def docker(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a docker command and return its result."""
    return subprocess.run(
        ["docker", *arguments], capture_output=True, text=True, check=check
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fail(message: str) -> None:
    print(f"docker smoke: FAILED: {message}")
    sys.exit(1)


def container_arguments(work: Path, arxiv: ArxivServer, smtp_port: int) -> list[str]:
    return [
        "--network",
        "host",
        "-v",
        f"{work / 'data'}:/data",
        "-v",
        f"{work / 'config'}:/config:ro",
        "-e",
        f"DIGEST_ARXIV_URL={arxiv.url}",
        "-e",
        "DIGEST_ARXIV_DELAY=0",
        "-e",
        "DIGEST_SMTP_HOST=127.0.0.1",
        "-e",
        f"DIGEST_SMTP_PORT={smtp_port}",
        "-e",
        "DIGEST_SMTP_SECURITY=none",
    ]


def build() -> None:
    started = time.monotonic()
    result = docker("build", "--network", "host", "-t", IMAGE, str(ROOT), check=False)
    if result.returncode != 0:
        fail(f"docker build: {result.stderr.strip().splitlines()[-1]}")
    print(f"docker smoke: image built in {time.monotonic() - started:.0f} s")


def prepare(work: Path) -> None:
    (work / "config").mkdir()
    (work / "config" / "subscribers.yaml").write_text(
        f"keywords: [{KEYWORD}]\n"
        "sender: 'Daily Papers <papers@example.org>'\n"
        "subscribers:\n  - email: alice@example.org\n",
        encoding="utf-8",
    )
    (work / "data").mkdir()
    # The container runs as an unprivileged user that must write here.
    (work / "data").chmod(0o777)


def run_once(arguments: list[str], day: str) -> None:
    result = docker(
        "run", "--rm", *arguments, IMAGE, "once", "--date", day, check=False
    )
    if result.returncode != 0:
        fail(f"digest once --date {day} exited {result.returncode}: {result.stderr}")


def check_daily_run(
    work: Path, arguments: list[str], arxiv: ArxivServer, inbox: Inbox
) -> None:
    papers = load_reference()[KEYWORD]
    arxiv.add(default_query(KEYWORD), papers[1:])
    run_once(arguments, "2026-01-08")
    arxiv.add(default_query(KEYWORD), papers)
    run_once(arguments, "2026-01-09")

    if len(inbox.messages) != 1 or inbox.messages[0]["To"] != "alice@example.org":
        fail(f"expected one mail to alice, got {len(inbox.messages)}")
    readme = (work / "data" / "README.md").read_text(encoding="utf-8")
    if "Last update: 2026-01-09" not in readme or papers[0].abs_url not in readme:
        fail("README.md in the volume lacks the day's update")
    print("docker smoke: digest once mailed the new paper and wrote the README")


def check_daemon(arguments: list[str]) -> None:
    started = docker("run", "-d", *arguments, IMAGE)
    container = started.stdout.strip()
    try:
        user = docker("exec", container, "id", "-u").stdout.strip()
        if user == "0":
            fail("the container runs as root")
        print(f"docker smoke: daemon runs as uid {user}")

        deadline = time.monotonic() + 60
        while docker("exec", container, "digest", "health", check=False).returncode:
            if time.monotonic() > deadline:
                fail(f"daemon not healthy: {docker('logs', container).stderr[-500:]}")
            time.sleep(1)
        print("docker smoke: digest health passes in the running daemon")

        stop_started = time.monotonic()
        docker("stop", "--time", "30", container)
        stop_s = time.monotonic() - stop_started
        status = docker(
            "inspect", "-f", "{{.State.ExitCode}}", container
        ).stdout.strip()
        if status != "0" or stop_s > STOP_LIMIT_S:
            fail(f"docker stop took {stop_s:.1f} s, exit status {status}")
        print(f"docker smoke: SIGTERM stopped the daemon in {stop_s:.1f} s, exit 0")
    finally:
        docker("rm", "-f", container, check=False)


def main() -> None:
    build()
    size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout) / 1e6
    with tempfile.TemporaryDirectory() as directory, ArxivServer() as arxiv:
        work = Path(directory)
        prepare(work)
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
        controller.start()
        try:
            arguments = container_arguments(work, arxiv, controller.port)
            check_daily_run(work, arguments, arxiv, inbox)
            check_daemon(arguments)
        finally:
            controller.stop()
            # Files the container wrote belong to its user; let the cleanup remove them.
            docker(
                "run",
                "--rm",
                "-v",
                f"{work / 'data'}:/data",
                "--user",
                "0",
                "--entrypoint",
                "chmod",
                IMAGE,
                "-R",
                "a+rwX",
                "/data",
                check=False,
            )
    print(f"docker smoke: passed; image size {size_mb:.0f} MB")


if __name__ == "__main__":
    main()
