"""Configuration: the subscribers file and the DIGEST_* environment variables.

Both are validated once, at start-up, into immutable objects that the rest of
the package receives as arguments. Every problem becomes one ConfigError line
that names the file or variable, the entry and what is wrong.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError
from .schedule import CrontabTrigger

# arXiv returns at most 2000 entries per request, and more papers per keyword would
# only make the README longer than anyone reads.
MAX_PAPERS_LIMIT = 2000

# An arXiv category such as "cs.CV", "math.AP", "hep-th" or "astro-ph.GA".
CATEGORY_PATTERN = re.compile(r"^[a-z-]+(\.[A-Za-z-]+)?$")

# Upper bound of delays and timeouts in seconds: larger values are typing errors.
MAX_WAIT_S = 3600

# A host name or an IP address, as DIGEST_SMTP_HOST may give it.
HOST_PATTERN = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")

# Characters that would end a mail header or a Markdown heading early.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_single_line(value: str, what: str) -> str:
    """Raise ValueError if the text contains a line break or control character."""
    if CONTROL_CHARACTERS.search(value):
        raise ValueError(f"{what} must not contain line breaks or control characters")
    return value


def normalize_address(value: str) -> str:
    """Validate one bare mail address and return it in normalised form."""
    check_single_line(value, "address")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"invalid address {value!r}: {error}") from None
    return checked.normalized


class Keyword(BaseModel):
    """One README section and one arXiv search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    query: str | None = None
    categories: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        check_single_line(value, "keyword name")
        value = " ".join(value.split())
        if not value:
            raise ValueError("keyword name must not be empty")
        if not value.replace('"', " ").strip():
            raise ValueError("keyword name must contain a word to search for")
        return value

    @field_validator("query")
    @classmethod
    def _check_query(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("query must not be empty; leave it out for the default")
        return value

    @field_validator("categories")
    @classmethod
    def _check_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for category in value:
            if not CATEGORY_PATTERN.match(category):
                raise ValueError(f"invalid arXiv category {category!r}, e.g. cs.CV")
        return value

    @property
    def search_query(self) -> str:
        """Return the configured arXiv query, or the phrase in title or abstract.

        arXiv's query syntax has no escape for a double quote inside a phrase,
        so quotes in the keyword are dropped from the default query.
        """
        if self.query is not None:
            return self.query
        phrase = " ".join(self.name.replace('"', " ").split())
        return f'ti:"{phrase}" OR abs:"{phrase}"'


class Subscriber(BaseModel):
    """One mail recipient and the keywords they follow (all when not given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    name: str | None = None
    keywords: tuple[str, ...] | None = Field(default=None, min_length=1)
    format: Literal["html", "text"] = "html"

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        return normalize_address(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_single_line(value.strip(), "name") or None


class DigestConfig(BaseModel):
    """The validated subscribers file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keywords: tuple[Keyword, ...] = Field(min_length=1)
    max_papers: int = Field(default=100, ge=1, le=MAX_PAPERS_LIMIT, strict=True)
    # Days that archived digests and delivery records are kept, for resends.
    archive_days: int = Field(default=365, ge=1, le=36500, strict=True)
    sender: str
    subscribers: tuple[Subscriber, ...] = ()
    # When the daemon runs, as a crontab(5) line in the timezone below.
    schedule: str = "0 6 * * *"
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as Europe/Berlin"
            ) from None
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        check_single_line(value, "schedule")
        trigger = CrontabTrigger(value, ZoneInfo("UTC"))
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
            raise ValueError(f"schedule {value!r} never fires, e.g. February 30th")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """Return the timezone of the schedule and of digest dates."""
        return ZoneInfo(self.timezone)

    def trigger(self) -> CrontabTrigger:
        """Return the APScheduler trigger of the schedule."""
        return CrontabTrigger(self.schedule, self.zone)

    @field_validator("keywords", mode="before")
    @classmethod
    def _expand_short_keywords(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [{"name": item} if isinstance(item, str) else item for item in value]

    @field_validator("sender")
    @classmethod
    def _check_sender(cls, value: str) -> str:
        check_single_line(value, "sender")
        addresses = getaddresses([value])
        if len(addresses) != 1 or "@" not in addresses[0][1]:
            raise ValueError(
                f"invalid sender {value!r}: expected one address such as "
                "'Daily Papers <papers@example.org>'"
            )
        normalize_address(addresses[0][1])
        return value

    @model_validator(mode="after")
    def _check_references(self) -> DigestConfig:
        # pydantic gives errors raised here no location, so messages carry it.
        names = [keyword.name for keyword in self.keywords]
        check_unique(names, "keywords", "keyword")
        emails = [s.email for s in self.subscribers]
        check_unique(emails, "subscribers", "subscriber address")
        known = {name.casefold() for name in names}
        for index, subscriber in enumerate(self.subscribers):
            for name in subscriber.keywords or ():
                if name.casefold() not in known:
                    raise ValueError(
                        f"subscribers[{index}] ({subscriber.email}).keywords: "
                        f"unknown keyword {name!r}; known keywords: {', '.join(names)}"
                    )
        return self

    @property
    def sender_address(self) -> str:
        """Return the bare address of the sender."""
        return parseaddr(self.sender)[1]

    def keywords_of(self, subscriber: Subscriber) -> list[Keyword]:
        """Return the keywords a subscriber follows, in configuration order."""
        if subscriber.keywords is None:
            return list(self.keywords)
        wanted = {name.casefold() for name in subscriber.keywords}
        return [k for k in self.keywords if k.name.casefold() in wanted]


def check_unique(values: list[str], field: str, what: str) -> None:
    """Raise ValueError naming the first value that appears twice, ignoring case."""
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        first = seen.setdefault(value.casefold(), index)
        if first != index:
            raise ValueError(
                f"{field}[{index}]: duplicate {what} {value!r}, "
                f"already given as {field}[{first}]"
            )


class Settings(BaseSettings):
    """Settings from DIGEST_* environment variables; secrets come only from here."""

    model_config = SettingsConfigDict(env_prefix="DIGEST_", frozen=True, extra="ignore")

    config_path: Path = Field(default=Path("subscribers.yaml"), alias="DIGEST_CONFIG")
    data_dir: Path = Field(default=Path("data"), alias="DIGEST_DATA_DIR")
    arxiv_url: str = Field(
        default="https://export.arxiv.org/api/query", alias="DIGEST_ARXIV_URL"
    )
    # arXiv's terms of use ask for at most one request every three seconds.
    arxiv_delay_s: float = Field(
        default=3.0, ge=0, le=MAX_WAIT_S, alias="DIGEST_ARXIV_DELAY"
    )
    arxiv_timeout_s: float = Field(
        default=30.0, gt=0, le=MAX_WAIT_S, alias="DIGEST_ARXIV_TIMEOUT"
    )
    smtp_host: str | None = Field(default=None, alias="DIGEST_SMTP_HOST")
    smtp_port: int = Field(default=587, ge=1, le=65535, alias="DIGEST_SMTP_PORT")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", alias="DIGEST_SMTP_SECURITY"
    )
    smtp_username: str | None = Field(default=None, alias="DIGEST_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, alias="DIGEST_SMTP_PASSWORD")
    # Some relays accept one connection per client only.
    smtp_connections: int = Field(
        default=4, ge=1, le=32, alias="DIGEST_SMTP_CONNECTIONS"
    )
    smtp_timeout_s: float = Field(
        default=30.0, gt=0, le=MAX_WAIT_S, alias="DIGEST_SMTP_TIMEOUT"
    )

    @field_validator("arxiv_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"invalid URL {value!r}, e.g. https://host/api/query")
        return value

    @field_validator("smtp_host", "smtp_username")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("smtp_host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is not None and not HOST_PATTERN.match(value):
            raise ValueError(f"invalid host name {value!r}")
        return value


def load_settings() -> Settings:
    """Read the DIGEST_* environment variables."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        variable = str(first["loc"][0]) if first["loc"] else "environment"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{variable}: {message}") from None


def load_config(path: Path) -> DigestConfig:
    """Read and validate the subscribers file at path."""
    data = read_yaml(path)
    try:
        return DigestConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe_error(error, data)}") from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning every failure into a one-line ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found; set DIGEST_CONFIG or create it"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read configuration: {error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}: line {line}: invalid UTF-8; save the file as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {describe_yaml_error(error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'keywords' at the top")
    return data


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key given twice in one mapping.

    PyYAML keeps the last value of a repeated key, which would silently drop
    the subscribers of an earlier 'subscribers:' block.
    """

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """Return a one-line description of a YAML error with its line and column."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "invalid YAML"
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def describe_error(error: ValidationError, data: Any) -> str:
    """Return the first validation problem as 'entry: message'."""
    first = error.errors()[0]
    location = format_location(first["loc"], data)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key; check its spelling"
    elif first["type"] == "missing":
        message = "required key is missing"
    return f"{location}: {message}" if location else message


def format_location(loc: tuple[int | str, ...], data: Any) -> str:
    """Turn a pydantic location into 'subscribers[2] (bob@x.org).format'."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            label = entry_label(node)
            if label:
                parts[-1] += f" ({label})"
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def entry_label(node: Any) -> str | None:
    """Return the name or address that identifies a list entry, if it has one."""
    if isinstance(node, dict):
        label = node.get("email") or node.get("name")
        if not label:
            return None
        # A label with a line break would split the one-line message.
        text = str(label)
        return repr(text) if CONTROL_CHARACTERS.search(text) else text
    return None
