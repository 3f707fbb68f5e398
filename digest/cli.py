"""The `digest` command line: parse options, call the library, report.

Errors the package raises on purpose are printed as one line on stderr; a
traceback is shown only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from . import __version__
from .config import load_config, load_settings
from .daily import run_daily
from .errors import ConfigError, DigestError

logger = logging.getLogger("digest")

EXIT_FAILED = 1
EXIT_USAGE = 2


def parse_date(value: str) -> date:
    """Parse a YYYY-MM-DD command-line date."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {value!r}, expected YYYY-MM-DD"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="digest",
        description="Mail researchers the newest arXiv papers on their keywords "
        "and publish a Daily Papers README.",
        epilog="Settings come from DIGEST_* environment variables; see README.md.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log details")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log only errors")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of errors"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    once = commands.add_parser(
        "once",
        help="fetch, update the README and deliver today's digests, then exit",
        description="Fetch every keyword from arXiv, store the new papers, rewrite "
        "the README and deliver the digests. Without DIGEST_SMTP_HOST the mails are "
        "written to <data dir>/outbox/<date>/ as .eml files.",
        epilog="example: digest once --date 2026-01-09 --readme site/README.md",
    )
    once.add_argument(
        "--date",
        type=parse_date,
        metavar="YYYY-MM-DD",
        help="digest date (default: today in UTC)",
    )
    once.add_argument(
        "--readme",
        type=Path,
        metavar="PATH",
        help="where to write the README (default: <data dir>/README.md)",
    )
    return parser


def configure_logging(arguments: argparse.Namespace) -> None:
    """Send log lines to stderr at the level the options ask for."""
    level = logging.INFO
    if arguments.verbose:
        level = logging.DEBUG
    elif arguments.quiet:
        level = logging.ERROR
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not arguments.verbose:
        # The arxiv package logs every page and sleep at INFO.
        logging.getLogger("arxiv").setLevel(logging.WARNING)


def command_once(arguments: argparse.Namespace) -> int:
    """Run the daily job once and print its summary line."""
    settings = load_settings()
    config = load_config(settings.config_path)
    day = arguments.date or datetime.now(UTC).date()
    report = run_daily(config, settings, day, readme_path=arguments.readme)
    for failure in report.failures:
        print(f"failed: {failure}", file=sys.stderr)
    print(report.summary())
    return report.exit_status


COMMANDS = {"once": command_once}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    arguments = build_parser().parse_args(argv)
    configure_logging(arguments)
    try:
        return COMMANDS[arguments.command](arguments)
    except DigestError as error:
        if arguments.debug:
            raise
        print(f"digest: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, ConfigError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("digest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
