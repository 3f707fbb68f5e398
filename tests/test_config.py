"""Tests of digest.config: the subscribers file, the DIGEST_* settings, and
how `digest once` reports invalid configuration.

The command-line tests run `python -m digest` as a subprocess with
DIGEST_ARXIV_URL pointing at port 9 of 127.0.0.1, so a run that got past
validation would fail to connect instead of reaching arXiv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

import digest
from digest.config import Keyword, load_config, load_settings
from digest.errors import ConfigError

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "subscribers.yaml"

# Port 9 (discard) normally has no listener, so a request fails with
# connection refused instead of waiting for a timeout.
UNREACHABLE_ARXIV_URL = "http://127.0.0.1:9/api/query"

STORE_FILE = "store.json"

VALID_HEADER = """\
keywords:
  - Video Anomaly Detection
  - Video Understanding
sender: "Daily Papers <papers@example.org>"
"""

SMTP_PASSWORD = "hunter2-do-not-print"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every DIGEST_* variable so the developer's shell cannot leak in."""
    for name in list(os.environ):
        if name.upper().startswith("DIGEST_"):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "subscribers.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error_message(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def settings_error_message() -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


# --- The sample subscribers file --------------------------------------------


def test_sample_config_loads_keywords() -> None:
    config = load_config(SAMPLE_CONFIG)

    assert [keyword.name for keyword in config.keywords] == [
        "Video Anomaly Detection",
        "Video Understanding",
        "Vision Language Model",
        "Multimodal Large Language Model",
    ]
    assert config.max_papers == 100
    assert config.sender == "Daily Papers <papers@example.org>"
    assert config.sender_address == "papers@example.org"


def test_sample_config_keeps_long_form_keyword() -> None:
    keyword = load_config(SAMPLE_CONFIG).keywords[2]

    assert keyword.name == "Vision Language Model"
    assert keyword.query == (
        'ti:"vision language model" OR abs:"vision language model" OR abs:"VLM"'
    )
    assert keyword.search_query == keyword.query
    assert keyword.categories == ("cs.CV", "cs.CL")


def test_sample_config_loads_subscribers() -> None:
    alice, bob = load_config(SAMPLE_CONFIG).subscribers

    assert alice.email == "alice@example.org"
    assert alice.name == "Alice"
    assert alice.format == "html"
    assert alice.keywords == ("Video Anomaly Detection", "Video Understanding")
    assert bob.email == "bob@example.org"
    assert bob.name == "Bob"
    assert bob.format == "text"
    assert bob.keywords is None


def test_sample_config_keywords_of_subscribers() -> None:
    config = load_config(SAMPLE_CONFIG)
    alice, bob = config.subscribers

    assert [keyword.name for keyword in config.keywords_of(alice)] == [
        "Video Anomaly Detection",
        "Video Understanding",
    ]
    assert config.keywords_of(bob) == list(config.keywords)


def test_keywords_of_follows_configuration_order(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        VALID_HEADER
        + """\
subscribers:
  - email: carol@example.org
    keywords: [video understanding, VIDEO ANOMALY DETECTION]
""",
    )
    config = load_config(path)

    names = [keyword.name for keyword in config.keywords_of(config.subscribers[0])]

    assert names == ["Video Anomaly Detection", "Video Understanding"]


def test_config_is_frozen() -> None:
    config = load_config(SAMPLE_CONFIG)

    with pytest.raises(ValidationError):
        config.max_papers = 5
    with pytest.raises(ValidationError):
        config.keywords[0].name = "Other"
    with pytest.raises(ValidationError):
        config.subscribers[0].format = "text"
    assert isinstance(config.keywords, tuple)
    assert isinstance(config.subscribers, tuple)


@pytest.mark.parametrize(
    ("name", "expected_query"),
    [
        pytest.param(
            "Video Understanding",
            'ti:"Video Understanding" OR abs:"Video Understanding"',
            id="plain",
        ),
        pytest.param(
            'The "Attention" Model',
            'ti:"The Attention Model" OR abs:"The Attention Model"',
            id="quotes-inside",
        ),
        pytest.param('"VLM"', 'ti:"VLM" OR abs:"VLM"', id="quotes-around"),
        pytest.param(
            "  Video   Understanding ",
            'ti:"Video Understanding" OR abs:"Video Understanding"',
            id="extra-whitespace",
        ),
    ],
)
def test_default_search_query(name: str, expected_query: str) -> None:
    keyword = Keyword(name=name)

    assert keyword.search_query == expected_query
    assert keyword.search_query.count('"') == 4


# --- Invalid subscribers files -----------------------------------------------

# DigestConfig checks duplicates and keyword references in a model validator,
# and pydantic reports errors raised there without a location.


@dataclass(frozen=True)
class BrokenFile:
    """One invalid subscribers file and what its ConfigError must contain."""

    id: str
    text: str
    fragment: str
    # The entry the message must name, or None for faults of the whole file.
    entry: str | None = None


def with_subscribers(entries: str) -> str:
    return VALID_HEADER + "subscribers:\n" + entries


def with_keywords(keywords: str) -> str:
    return f'keywords: {keywords}\nsender: "papers@example.org"\n'


BROKEN_FILES = [
    BrokenFile("yaml-syntax", "keywords: [a\nsender: x\n", "line 2"),
    BrokenFile(
        "archive-days-zero",
        VALID_HEADER + "archive_days: 0\n",
        "greater than or equal to 1",
        "archive_days",
    ),
    BrokenFile(
        "schedule-never-fires",
        VALID_HEADER + "schedule: '0 6 30 2 *'\n",
        "never fires",
        "schedule",
    ),
    BrokenFile(
        "duplicate-yaml-key",
        VALID_HEADER + "max_papers: 5\nmax_papers: 6\n",
        "duplicate key 'max_papers'",
    ),
    BrokenFile("top-level-list", "- a\n- b\n", "mapping"),
    BrokenFile("top-level-scalar", "hello\n", "mapping"),
    BrokenFile("empty-file", "", "mapping"),
    BrokenFile(
        "unknown-top-level-key", VALID_HEADER + "colour: red\n", "unknown key", "colour"
    ),
    BrokenFile(
        "unknown-subscriber-key",
        with_subscribers("  - email: bob@example.org\n    colour: red\n"),
        "unknown key",
        "subscribers[0] (bob@example.org).colour",
    ),
    BrokenFile(
        "unknown-keyword-key",
        with_keywords("[A, {name: B, qurey: x}]"),
        "unknown key",
        "keywords[1] (B).qurey",
    ),
    BrokenFile(
        "missing-keywords", 'sender: "papers@example.org"\n', "missing", "keywords"
    ),
    BrokenFile("empty-keywords", with_keywords("[]"), "at least 1", "keywords"),
    BrokenFile(
        "duplicate-keyword",
        with_keywords("[Alpha, Beta, Alpha]"),
        "duplicate keyword 'Alpha'",
        "keywords[2]",
    ),
    BrokenFile(
        "duplicate-keyword-case",
        with_keywords("[Alpha, Beta, ALPHA]"),
        "duplicate keyword 'ALPHA'",
        "keywords[2]",
    ),
    BrokenFile(
        "empty-keyword", with_keywords('[A, ""]'), "must not be empty", "keywords[1]"
    ),
    BrokenFile(
        "whitespace-keyword",
        with_keywords('[A, "   "]'),
        "must not be empty",
        "keywords[1]",
    ),
    BrokenFile(
        "keyword-with-newline",
        with_keywords('[A, "Video\\nUnderstanding"]'),
        "line breaks",
        "keywords[1]",
    ),
    BrokenFile(
        "keyword-with-control-character",
        with_keywords('[A, "Video\\x07"]'),
        "control characters",
        "keywords[1]",
    ),
    BrokenFile(
        "keyword-only-quotes",
        with_keywords("['\"\"']"),
        "keyword",
        "keywords[0]",
    ),
    BrokenFile(
        "keyword-not-a-string",
        with_keywords("[A, 5]"),
        "valid dictionary",
        "keywords[1]",
    ),
    BrokenFile(
        "invalid-category",
        with_keywords("[A, {name: B, categories: [CS.CV]}]"),
        "invalid arXiv category 'CS.CV'",
        "keywords[1] (B).categories",
    ),
    BrokenFile(
        "categories-not-a-list",
        with_keywords("[A, {name: B, categories: cs.CV}]"),
        "valid tuple",
        "keywords[1] (B).categories",
    ),
    BrokenFile(
        "empty-query",
        with_keywords('[A, {name: B, query: "  "}]'),
        "query must not be empty",
        "keywords[1] (B).query",
    ),
    BrokenFile("missing-sender", "keywords: [A]\n", "missing", "sender"),
    BrokenFile(
        "invalid-sender",
        'keywords: [A]\nsender: "Papers <papers@>"\n',
        "invalid sender 'Papers <papers@>'",
        "sender",
    ),
    BrokenFile(
        "sender-without-address",
        'keywords: [A]\nsender: "Daily Papers"\n',
        "'Daily Papers'",
        "sender",
    ),
    BrokenFile(
        "sender-with-crlf",
        'keywords: [A]\nsender: "papers@example.org\\r\\nBcc: eve@example.org"\n',
        "line breaks",
        "sender",
    ),
    BrokenFile(
        "sender-with-second-address",
        'keywords: [A]\nsender: "papers@example.org, eve@example.org"\n',
        "sender",
        "sender",
    ),
    BrokenFile(
        "subscriber-unknown-keyword",
        with_subscribers(
            "  - email: alice@example.org\n"
            "  - email: bob@example.org\n"
            "    keywords: [video understanding, Nope]\n"
        ),
        "unknown keyword 'Nope'",
        "subscribers[1]",
    ),
    BrokenFile(
        "invalid-address",
        with_subscribers("  - email: alice@example.org\n  - email: bob@@example.org\n"),
        "invalid address 'bob@@example.org'",
        "subscribers[1] (bob@@example.org).email",
    ),
    BrokenFile(
        "address-without-at",
        with_subscribers("  - email: bob\n"),
        "invalid address 'bob'",
        "subscribers[0] (bob).email",
    ),
    BrokenFile(
        "missing-address",
        with_subscribers("  - name: Bob\n"),
        "missing",
        "subscribers[0] (Bob).email",
    ),
    BrokenFile(
        "duplicate-address",
        with_subscribers("  - email: bob@example.org\n  - email: bob@example.org\n"),
        "duplicate subscriber address 'bob@example.org'",
        "subscribers[1]",
    ),
    BrokenFile(
        "duplicate-address-case",
        with_subscribers("  - email: bob@example.org\n  - email: Bob@Example.ORG\n"),
        "duplicate subscriber address",
        "subscribers[1]",
    ),
    BrokenFile(
        "address-with-crlf",
        with_subscribers('  - email: "bob@example.org\\r\\nBcc: eve@example.org"\n'),
        "line breaks",
        "subscribers[0]",
    ),
    BrokenFile(
        "address-with-second-address",
        with_subscribers('  - email: "bob@example.org, eve@example.org"\n'),
        "invalid address",
        "subscribers[0]",
    ),
    BrokenFile(
        "address-with-display-name",
        with_subscribers('  - email: "Bob <bob@example.org>"\n'),
        "invalid address",
        "subscribers[0]",
    ),
    BrokenFile(
        "name-with-crlf",
        with_subscribers(
            '  - email: bob@example.org\n    name: "Bob\\r\\nBcc: eve@example.org"\n'
        ),
        "line breaks",
        "subscribers[0] (bob@example.org).name",
    ),
    BrokenFile(
        "unknown-format",
        with_subscribers("  - email: bob@example.org\n    format: pdf\n"),
        "'html' or 'text'",
        "subscribers[0] (bob@example.org).format",
    ),
    BrokenFile(
        "max-papers-zero",
        VALID_HEADER + "max_papers: 0\n",
        "greater than",
        "max_papers",
    ),
    BrokenFile(
        "max-papers-negative",
        VALID_HEADER + "max_papers: -5\n",
        "greater than",
        "max_papers",
    ),
    BrokenFile(
        "max-papers-huge",
        VALID_HEADER + "max_papers: 100000\n",
        "less than",
        "max_papers",
    ),
    BrokenFile(
        "max-papers-word",
        VALID_HEADER + "max_papers: many\n",
        "valid integer",
        "max_papers",
    ),
    BrokenFile(
        "max-papers-fraction",
        VALID_HEADER + "max_papers: 2.5\n",
        "valid integer",
        "max_papers",
    ),
    BrokenFile(
        "max-papers-boolean",
        VALID_HEADER + "max_papers: true\n",
        "valid integer",
        "max_papers",
    ),
]


MESSAGE_CASES = [pytest.param(case, id=case.id) for case in BROKEN_FILES]

ENTRY_CASES = [
    pytest.param(case, id=case.id) for case in BROKEN_FILES if case.entry is not None
]


@pytest.mark.parametrize("case", MESSAGE_CASES)
def test_broken_file_raises_one_line_error(tmp_path: Path, case: BrokenFile) -> None:
    path = write_config(tmp_path, case.text)

    message = config_error_message(path)

    assert "\n" not in message
    assert "\r" not in message
    assert str(path) in message
    assert case.fragment in message


@pytest.mark.parametrize("case", ENTRY_CASES)
def test_broken_file_error_names_entry(tmp_path: Path, case: BrokenFile) -> None:
    path = write_config(tmp_path, case.text)

    message = config_error_message(path)

    assert case.entry is not None
    assert case.entry in message


def make_missing_file(tmp_path: Path) -> Path:
    return tmp_path / "absent.yaml"


def make_directory(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers.yaml"
    path.mkdir()
    return path


def make_invalid_utf8_file(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers.yaml"
    path.write_bytes(b"keywords: [caf\xe9]\nsender: papers@example.org\n")
    return path


def make_unreadable_file(tmp_path: Path) -> Path:
    path = Path(shutil.copy(SAMPLE_CONFIG, tmp_path / "subscribers.yaml"))
    path.chmod(0)
    return path


@pytest.mark.parametrize(
    ("make_path", "fragment"),
    [
        pytest.param(make_missing_file, "not found", id="missing"),
        pytest.param(make_directory, "cannot read", id="directory"),
        pytest.param(make_invalid_utf8_file, "invalid UTF-8", id="invalid-utf8"),
        pytest.param(
            make_unreadable_file,
            "cannot read",
            id="no-permission",
            marks=pytest.mark.skipif(
                hasattr(os, "geteuid") and os.geteuid() == 0,
                reason="root reads a file whatever its mode",
            ),
        ),
    ],
)
def test_unreadable_file_raises_one_line_error(
    tmp_path: Path, make_path: Callable[[Path], Path], fragment: str
) -> None:
    path = make_path(tmp_path)

    message = config_error_message(path)

    assert "\n" not in message
    assert "\r" not in message
    assert str(path) in message
    assert fragment in message


# --- DIGEST_* settings -------------------------------------------------------


def test_settings_defaults() -> None:
    settings = load_settings()

    assert settings.config_path == Path("subscribers.yaml")
    assert settings.data_dir == Path("data")
    assert settings.arxiv_url == "https://export.arxiv.org/api/query"
    assert settings.arxiv_delay_s == 3.0
    assert settings.arxiv_timeout_s == 30.0
    assert settings.smtp_host is None
    assert settings.smtp_port == 587
    assert settings.smtp_security == "starttls"
    assert settings.smtp_username is None
    assert settings.smtp_password is None
    assert settings.smtp_timeout_s == 30.0


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("DIGEST_CONFIG", "/etc/digest.yaml", "config_path", Path("/etc/digest.yaml")),
        ("DIGEST_DATA_DIR", "/var/lib/digest", "data_dir", Path("/var/lib/digest")),
        ("DIGEST_ARXIV_URL", UNREACHABLE_ARXIV_URL, "arxiv_url", UNREACHABLE_ARXIV_URL),
        ("DIGEST_ARXIV_DELAY", "0", "arxiv_delay_s", 0.0),
        ("DIGEST_ARXIV_DELAY", "0.5", "arxiv_delay_s", 0.5),
        ("DIGEST_ARXIV_TIMEOUT", "12.5", "arxiv_timeout_s", 12.5),
        ("DIGEST_SMTP_HOST", "mail.example.org", "smtp_host", "mail.example.org"),
        ("DIGEST_SMTP_HOST", "", "smtp_host", None),
        ("DIGEST_SMTP_PORT", "465", "smtp_port", 465),
        ("DIGEST_SMTP_SECURITY", "starttls", "smtp_security", "starttls"),
        ("DIGEST_SMTP_SECURITY", "tls", "smtp_security", "tls"),
        ("DIGEST_SMTP_SECURITY", "none", "smtp_security", "none"),
        ("DIGEST_SMTP_USERNAME", "papers", "smtp_username", "papers"),
        ("DIGEST_SMTP_USERNAME", "", "smtp_username", None),
        ("DIGEST_SMTP_TIMEOUT", "5", "smtp_timeout_s", 5.0),
    ],
)
def test_settings_read_variable(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    attribute: str,
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)

    settings = load_settings()

    assert getattr(settings, attribute) == expected


def test_settings_read_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", SMTP_PASSWORD)

    settings = load_settings()

    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == SMTP_PASSWORD


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DIGEST_SMTP_PORT", "abc"),
        ("DIGEST_SMTP_PORT", "70000"),
        ("DIGEST_SMTP_PORT", "0"),
        ("DIGEST_SMTP_SECURITY", "ssl"),
        ("DIGEST_ARXIV_DELAY", "-1"),
        ("DIGEST_ARXIV_DELAY", "soon"),
        ("DIGEST_ARXIV_DELAY", "inf"),
        ("DIGEST_ARXIV_DELAY", "100000"),
        ("DIGEST_ARXIV_TIMEOUT", "0"),
        ("DIGEST_ARXIV_URL", "ftp://x"),
        ("DIGEST_ARXIV_URL", "http://"),
        ("DIGEST_SMTP_TIMEOUT", "-3"),
    ],
)
def test_settings_reject_invalid_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    message = settings_error_message()

    assert "\n" not in message
    assert "\r" not in message
    assert variable in message


def test_settings_error_omits_pydantic_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIGEST_ARXIV_URL", "ftp://x")

    message = settings_error_message()

    assert "Value error" not in message


def test_settings_error_hides_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("DIGEST_SMTP_PORT", "abc")

    message = settings_error_message()

    assert "DIGEST_SMTP_PORT" in message
    assert SMTP_PASSWORD not in message


def test_settings_repr_hides_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", SMTP_PASSWORD)

    settings = load_settings()

    assert SMTP_PASSWORD not in repr(settings)
    assert SMTP_PASSWORD not in str(settings)
    assert SMTP_PASSWORD not in settings.model_dump_json()


# --- The command line ----------------------------------------------------------


def run_digest(
    tmp_path: Path, *arguments: str, extra_environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m digest` with its config and data dir inside tmp_path."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("DIGEST_")
    }
    environment["DIGEST_CONFIG"] = str(tmp_path / "subscribers.yaml")
    environment["DIGEST_DATA_DIR"] = str(tmp_path / "data")
    environment["DIGEST_ARXIV_URL"] = UNREACHABLE_ARXIV_URL
    environment.update(extra_environment or {})
    return subprocess.run(
        [sys.executable, "-m", "digest", *arguments],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("keywords: [a\nsender: x\n", "invalid YAML", id="yaml-syntax"),
        pytest.param(
            with_subscribers("  - email: bob@example.org\n    keywords: [Nope]\n"),
            "unknown keyword 'Nope'",
            id="subscriber-unknown-keyword",
        ),
        pytest.param(
            with_subscribers("  - email: bob@@example.org\n"),
            "invalid address",
            id="invalid-address",
        ),
    ],
)
def test_cli_rejects_broken_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = write_config(tmp_path, text)

    result = run_digest(tmp_path, "once")

    lines = result.stderr.splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("digest: error: ")
    assert str(path) in lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data" / STORE_FILE).exists()


def test_cli_rejects_invalid_setting(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_CONFIG, tmp_path / "subscribers.yaml")

    result = run_digest(tmp_path, "once", extra_environment={"DIGEST_SMTP_PORT": "abc"})

    lines = result.stderr.splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("digest: error: ")
    assert "DIGEST_SMTP_PORT" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / STORE_FILE).exists()


def test_cli_prints_version(tmp_path: Path) -> None:
    result = run_digest(tmp_path, "--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"digest {digest.__version__}"


def test_cli_rejects_invalid_date(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_CONFIG, tmp_path / "subscribers.yaml")

    result = run_digest(tmp_path, "once", "--date", "2026-13-01")

    assert result.returncode == 2
    assert "invalid date '2026-13-01'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / STORE_FILE).exists()
