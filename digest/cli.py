"""The `digest` command line: parse options, call the library, report.

Errors the package raises on purpose are printed as one line on stderr; a
traceback is shown only with --debug.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path

from . import __version__
from .config import DigestConfig, Settings, load_config, load_settings
from .daemon import Daemon
from .daily import RunOptions, count_of, rebuild_readme, run_daily, utc_now
from .errors import ConfigError, DigestError
from .health import check_health
from .history import build_history
from .mailer import check_server
from .preview import render_preview
from .resend import resend_digest
from .schedule import digest_date
from .store import Store

logger = logging.getLogger("digest")

EXIT_FAILED = 1
EXIT_USAGE = 2


def parse_date(value: str) -> date:
    """Parse a YYYY-MM-DD command-line date."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"invalid date {value!r}: {error}; expected YYYY-MM-DD"
        ) from None


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    """Add a subcommand whose help ends with a usage example."""
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"example: {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="digest",
        description="Mail researchers the newest arXiv papers on their keywords "
        "and publish a Daily Papers README.",
        epilog="example: digest once --date 2026-01-09\n\n"
        "Settings come from DIGEST_* environment variables; see README.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    add_once(commands)
    add_run(commands)
    add_resend(commands)
    add_preview(commands)
    add_check(commands)
    add_history(commands)
    add_readme(commands)
    add_health(commands)
    return parser


def add_once(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    once = add_command(
        commands,
        "once",
        "fetch, update the README and deliver the day's digests, then exit",
        "Fetch every keyword from arXiv, store the new papers, rewrite the README\n"
        "and deliver the digests. Without DIGEST_SMTP_HOST the mails are written\n"
        "to <data dir>/outbox/<date>/ as .eml files.",
        "digest once --date 2026-01-09 --readme site/README.md",
    )
    once.add_argument(
        "--date",
        type=parse_date,
        metavar="YYYY-MM-DD",
        help="digest date (default: today in the configured timezone)",
    )
    once.add_argument(
        "--readme",
        type=Path,
        metavar="PATH",
        help="where to write the README (default: <data dir>/README.md)",
    )


def add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = add_command(
        commands,
        "run",
        "run as a daemon on the configured schedule",
        "Run the daily job on 'schedule' (a crontab line, default '0 6 * * *') in\n"
        "'timezone' (default UTC) from the configuration, which is read again\n"
        "before each run. A scheduled run missed while the daemon was down is\n"
        "caught up at start-up. SIGTERM or SIGINT stops it cleanly.",
        "digest run --now",
    )
    run.add_argument(
        "--now", action="store_true", help="also run once for today at start-up"
    )


def add_resend(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    resend = add_command(
        commands,
        "resend",
        "send an archived digest again",
        "Send the digest of a past date again, rebuilt from the store exactly as\n"
        "it was that day, to everyone who was due it. arXiv is not asked.",
        "digest resend --date 2026-01-09 --to alice@example.org",
    )
    resend.add_argument(
        "--date",
        type=parse_date,
        required=True,
        metavar="YYYY-MM-DD",
        help="date of the digest to send",
    )
    resend.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="EMAIL",
        help="send only to this subscriber (repeatable)",
    )
    resend.add_argument(
        "--failed",
        action="store_true",
        help="send only what has not reached subscribers: failed or pending mails",
    )


def add_preview(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    preview = add_command(
        commands,
        "preview",
        "render an archived digest without sending it",
        "Render the digest of a date (the latest by default), whole or as one\n"
        "subscriber gets it, to a file or to standard output.",
        "digest preview --to alice@example.org --output /tmp/digest.html",
    )
    preview.add_argument("--to", metavar="EMAIL", help="the digest of this subscriber")
    preview.add_argument("--date", type=parse_date, metavar="YYYY-MM-DD")
    preview.add_argument("--format", choices=["html", "text"], default="html")
    preview.add_argument(
        "--output", type=Path, metavar="FILE", help="write here instead of stdout"
    )


def add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = add_command(
        commands,
        "check",
        "validate the configuration and the environment",
        "Validate the configuration file and the DIGEST_* settings, and list the\n"
        "keywords and subscribers. Nothing is fetched or sent.",
        "digest check --smtp",
    )
    check.add_argument(
        "--smtp",
        action="store_true",
        help="also connect and log in to the mail server, without sending",
    )


def add_history(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_command(
        commands,
        "history",
        "list past digests and their deliveries",
        "List each archived date, newest first, with its new papers and how many\n"
        "subscribers were sent it, failed, or are still pending.",
        "digest history",
    )


def add_readme(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    readme = add_command(
        commands,
        "readme",
        "rewrite the README from the store",
        "Write the Daily Papers README from the stored papers alone, dated with\n"
        "the latest digest. arXiv is not asked.",
        "digest readme --output site/README.md",
    )
    readme.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="where to write it (default: <data dir>/README.md)",
    )


def add_health(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_command(
        commands,
        "health",
        "check that the daemon is alive and on schedule",
        "Exit 0 when the daemon's heartbeat is fresh and the latest scheduled run\n"
        "completed, is running, or was due less than an hour ago; else print why\n"
        "and exit 1. Meant for container health checks.",
        "digest health",
    )


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
        # The arxiv package logs every page and sleep, APScheduler every job, at INFO.
        logging.getLogger("arxiv").setLevel(logging.WARNING)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def load() -> tuple[Settings, DigestConfig]:
    """Read the settings, then the configuration file they name."""
    settings = load_settings()
    return settings, load_config(settings.config_path)


def show_progress(number: int, total: int, keyword: str) -> None:
    """Show which keyword is being fetched, on one terminal line."""
    sys.stderr.write(f"\r\x1b[Kfetching {number}/{total}: {keyword}")
    if number == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def command_once(arguments: argparse.Namespace) -> int:
    """Run the daily job once and print its summary line."""
    settings, config = load()
    day = arguments.date or digest_date(utc_now(), config.zone)
    progress = show_progress if sys.stderr.isatty() else None
    options = RunOptions(readme_path=arguments.readme, progress=progress)
    report = run_daily(config, settings, day, options)
    print(report.summary())
    return report.exit_status


def command_run(arguments: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or SIGINT."""
    daemon = Daemon(load_settings(), run_now=arguments.now)

    async def serve() -> None:
        daemon.install_signal_handlers()
        await daemon.serve()

    asyncio.run(serve())
    return 0


def command_resend(arguments: argparse.Namespace) -> int:
    """Send an archived digest again and report the count."""
    settings, config = load()
    report = resend_digest(
        config, settings, arguments.date, arguments.to, arguments.failed, utc_now
    )
    print(
        f"{arguments.date.isoformat()}: {count_of(report.sent, 'mail')} resent, "
        f"{count_of(len(report.failures), 'failure')}"
    )
    return 1 if report.failures else 0


def command_preview(arguments: argparse.Namespace) -> int:
    """Write a rendered digest to a file or stdout."""
    settings, config = load()
    output = render_preview(
        config, settings, arguments.date, arguments.to, arguments.format
    )
    if arguments.output is None:
        sys.stdout.write(output)
    else:
        arguments.output.write_text(output, encoding="utf-8")
        print(f"preview written to {arguments.output}")
    return 0


def command_check(arguments: argparse.Namespace) -> int:
    """Validate everything and list what the daemon would do."""
    settings, config = load()
    next_run = config.trigger().get_next_fire_time(None, utc_now())
    print(f"configuration {settings.config_path}: valid")
    print(f"schedule: {config.schedule} in {config.timezone}, next run {next_run}")
    print(f"data directory: {settings.data_dir}")
    print(f"keywords ({len(config.keywords)}):")
    for keyword in config.keywords:
        print(f"  {keyword.name}: {keyword.search_query}")
    print(f"subscribers ({len(config.subscribers)}):")
    for subscriber in config.subscribers:
        names = ", ".join(k.name for k in config.keywords_of(subscriber))
        print(f"  {subscriber.email} ({subscriber.format}): {names}")
    if settings.smtp_host is None:
        print("mail: no DIGEST_SMTP_HOST, digests go to the outbox directory")
    elif arguments.smtp:
        server = asyncio.run(check_server(settings))
        login = " and logged in" if settings.smtp_username else ""
        print(f"{server}: connected{login}")
    else:
        print(f"mail server: {settings.smtp_host}:{settings.smtp_port} (not contacted)")
    return 0


def command_history(arguments: argparse.Namespace) -> int:
    """Print one line per archived date."""
    settings, config = load()
    store = Store.open(settings.data_dir)
    try:
        days = build_history(config, store)
    finally:
        store.close()
    if not days:
        print("no digest archived yet")
    for day in days:
        print(
            f"{day.day.isoformat()}: {day.new_papers} new papers, "
            f"{day.count('sent')} sent, {day.count('failed')} failed, "
            f"{day.count('pending')} pending"
        )
    return 0


def command_readme(arguments: argparse.Namespace) -> int:
    """Rewrite the README from the store."""
    settings, config = load()
    path = rebuild_readme(config, settings, arguments.output)
    print(f"README written to {path}")
    return 0


def command_health(arguments: argparse.Namespace) -> int:
    """Print whether the daemon is healthy."""
    print(check_health(load_settings(), utc_now()))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "health": command_health,
    "once": command_once,
    "run": command_run,
    "resend": command_resend,
    "preview": command_preview,
    "check": command_check,
    "history": command_history,
    "readme": command_readme,
}


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
    except BrokenPipeError:
        # The reader of stdout went away, as `digest history | head -1` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
