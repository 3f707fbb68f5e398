"""The container files: what an operator relies on without reading them.

scripts/docker_smoke.py builds and runs the image where a Docker engine exists;
these checks keep the files' promises when it does not.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_image_runs_daemon_as_non_root():
    stage = dict(final_stage())

    assert stage["FROM"] == "python:3.11-slim"
    assert stage["USER"] == "digest"
    assert stage["ENTRYPOINT"] == '["digest"]'
    assert stage["CMD"] == '["run"]'
    assert stage["VOLUME"] == "/data"
    assert "DIGEST_CONFIG=/config/subscribers.yaml" in stage["ENV"]
    assert "DIGEST_DATA_DIR=/data" in stage["ENV"]
    assert re.search(r'CMD \["digest", "--quiet", "health"\]', stage["HEALTHCHECK"])


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()

    for pattern in (".git", ".venv", "data", "outbox", ".env"):
        assert pattern in ignored


def test_compose_runs_digest_with_mailpit():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))

    digest = compose["services"]["digest"]
    assert "digest-data:/data" in digest["volumes"]
    assert "./subscribers.yaml:/config/subscribers.yaml:ro" in digest["volumes"]
    assert digest["environment"]["DIGEST_SMTP_HOST"] == "${DIGEST_SMTP_HOST:-mailpit}"
    assert digest["env_file"] == [{"path": ".env", "required": False}]
    assert "DIGEST_SMTP_PASSWORD" not in digest["environment"]
    assert compose["services"]["mailpit"]["image"].startswith("axllent/mailpit:")
    assert "127.0.0.1:8025:8025" in compose["services"]["mailpit"]["ports"]
