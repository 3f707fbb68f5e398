#!/usr/bin/env python3
"""Measure the daily digest against its floors and print one table.

Every server is local: an arXiv API stand-in on 127.0.0.1 in this process, and
aiosmtpd in a process of its own. Run from a checkout with the test extra
installed:

    python benchmarks/run.py            # every benchmark at full size
    python benchmarks/run.py --quick    # smaller sizes, for a first look

Figures go to stdout as a Markdown table; nothing is timed in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from arxiv_server import ArxivServer, RecordedPaper  # noqa: E402

from digest.arxiv_client import build_query  # noqa: E402
from digest.config import DigestConfig, Settings, load_config  # noqa: E402
from digest.daily import rebuild_readme, run_daily  # noqa: E402
from digest.delivery import ArchivedDay, prepare_mail  # noqa: E402
from digest.papers import Paper  # noqa: E402
from digest.render import TEMPLATE_NAMES, Renderer, build_digest  # noqa: E402
from digest.resend import resend_digest  # noqa: E402
from digest.store import STORE_FILE, Store  # noqa: E402

DAY_ONE = date(2026, 1, 8)
DAY_TWO = date(2026, 1, 9)
START = datetime(2026, 1, 1, tzinfo=UTC)
WORDS = [
    "video",
    "anomaly",
    "detection",
    "language",
    "model",
    "multimodal",
    "learning",
    "graph",
]

rows: list[tuple[str, str, str, str]] = []


def report(benchmark: str, measured: str, floor: str, verdict: str) -> None:
    """Add a row to the table and echo it, so long runs show progress."""
    rows.append((benchmark, measured, floor, verdict))
    print(f"  {benchmark}: {measured} | floor {floor} | {verdict}", file=sys.stderr)


def verdict(*targets: tuple[str, bool]) -> str:
    """Return which targets are met and which are missed."""
    met = [name for name, is_met in targets if is_met]
    missed = [name for name, is_met in targets if not is_met]
    parts = []
    if met:
        parts.append("meets " + " and ".join(met))
    if missed:
        parts.append("misses " + " and ".join(missed))
    return "; ".join(parts)


def keyword_names(count: int) -> list[str]:
    return [f"Topic {number:02d}" for number in range(count)]


def make_paper(number: int, rng: random.Random, moment: datetime) -> RecordedPaper:
    summary = " ".join(rng.choice(WORDS) for _ in range(150))
    return RecordedPaper(
        paper_id=f"{2000 + number // 100000}.{number % 100000:05d}",
        version=1,
        title=f"Paper {number}: " + " ".join(rng.choice(WORDS) for _ in range(8)),
        summary=summary,
        comment="12 pages, 4 figures" if number % 3 else None,
        authors=("Ada Lovelace", "Zoë Ångström", "Alan Turing"),
        primary_category="cs.CV",
        categories=("cs.CV", "cs.AI"),
        published=moment,
        updated=moment,
    )


def to_paper(recorded: RecordedPaper) -> Paper:
    """Return the Paper the product would store for a recorded paper."""
    return Paper(
        paper_id=recorded.paper_id,
        version=recorded.version,
        title=recorded.title,
        authors=recorded.authors,
        summary=recorded.summary,
        comment=recorded.comment,
        primary_category=recorded.primary_category,
        categories=recorded.categories,
        published_at=recorded.published,
        updated_at=recorded.updated,
    )


def write_config(path: Path, keywords: list[str], subscribers: list[dict]) -> None:
    config = {
        "keywords": keywords,
        "max_papers": 100,
        "sender": "Daily Papers <papers@example.org>",
        "subscribers": subscribers,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def make_subscribers(count: int, keywords: list[str], rng: random.Random) -> list[dict]:
    return [
        {
            "email": f"reader{number}@example.org",
            "keywords": rng.sample(keywords, rng.randint(1, 5)),
            "format": "html" if number % 4 else "text",
        }
        for number in range(count)
    ]


def serve_days(server: ArxivServer, keywords: list[str], new_per_keyword: int) -> dict:
    """Serve day one; return day two's results, with new papers on top."""
    day_one, day_two = make_days(keywords, new_per_keyword)
    server.set_papers(day_one)
    return day_two


def make_days(keywords: list[str], new_per_keyword: int) -> tuple[dict, dict]:
    """Return the results of day one and day two, by arXiv query."""
    rng = random.Random(7)
    day_one, day_two = {}, {}
    number = 0
    for index, name in enumerate(keywords):
        query = build_query(DigestConfig(keywords=[name], sender="a@b.org").keywords[0])
        papers = []
        for rank in range(100 + new_per_keyword):
            moment = START + timedelta(minutes=index * 1000 + rank)
            papers.append(make_paper(number, rng, moment))
            number += 1
        papers.reverse()
        day_one[query] = papers[new_per_keyword:]
        day_two[query] = papers
    return day_one, day_two


def settings_for(
    data_dir: Path, config: Path, arxiv_url: str, **extra: object
) -> Settings:
    return Settings(
        DIGEST_CONFIG=config,
        DIGEST_DATA_DIR=data_dir,
        DIGEST_ARXIV_URL=arxiv_url,
        DIGEST_ARXIV_DELAY=0,
        **extra,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_smtp_sink() -> tuple[subprocess.Popen[bytes], int]:
    """Start aiosmtpd with a discarding handler in another process."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{port}",
        ],
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("aiosmtpd did not start")


# 1. Requests per run


def bench_requests(work: Path, keyword_count: int, delay_s: float) -> None:
    keywords = keyword_names(keyword_count)
    config_path = work / "requests.yaml"
    write_config(config_path, keywords, [{"email": "reader@example.org"}])
    config = load_config(config_path)
    with ArxivServer() as server:
        day_two = serve_days(server, keywords, new_per_keyword=1)
        settings = settings_for(work / "requests", config_path, server.url)
        settings = settings.model_copy(update={"arxiv_delay_s": delay_s})
        run_daily(config, settings, DAY_ONE)
        server.set_papers(day_two)
        server.clear_requests()
        started = time.monotonic()
        run_daily(config, settings, DAY_TWO)
        elapsed_s = time.monotonic() - started
        requests = len(server.requests)

        server.clear_requests()
        resend_digest(config, settings, DAY_TWO, [], False, lambda: datetime.now(UTC))
        rebuild_readme(config, settings, None)
        extra = len(server.requests)

    floor_s = (keyword_count - 1) * delay_s
    report(
        f"requests per run ({keyword_count} keywords, delay {delay_s} s)",
        f"{requests} requests, {elapsed_s:.2f} s",
        f"{keyword_count} requests, {floor_s:.2f} s of waiting",
        "at floor" if requests == keyword_count else "above floor",
    )
    report(
        "requests for a resend and a README rebuild",
        f"{extra} requests",
        "0 requests",
        "at floor" if extra == 0 else "above floor",
    )


# 2. Delivery throughput


async def send_pooled(
    messages: list[EmailMessage], port: int, connections: int
) -> float:
    """Send over a pool of reused connections; return messages per second."""
    queue: asyncio.Queue[EmailMessage] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def worker() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
            while not queue.empty():
                await client.send_message(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(messages) / (time.perf_counter() - started)


async def send_naive(messages: list[EmailMessage], port: int) -> float:
    """Open a new connection per message; return messages per second."""
    started = time.perf_counter()
    for message in messages:
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
    return len(messages) / (time.perf_counter() - started)


def prepared_messages(config: DigestConfig, data_dir: Path) -> list[EmailMessage]:
    """Build every subscriber's mail of day two, as the product builds them."""
    store = Store.open(data_dir)
    try:
        archive = ArchivedDay.load(store, DAY_TWO)
    finally:
        store.close()
    renderer = Renderer()
    now = datetime.now(UTC)
    messages = []
    for subscriber in config.subscribers:
        digest = archive.digest_for(config, subscriber)
        if digest.paper_count:
            messages.append(
                prepare_mail(config, subscriber, digest, renderer, now).message
            )
    return messages


def bench_delivery(work: Path, subscriber_count: int) -> dict[str, float]:
    keywords = keyword_names(20)
    config_path = work / "delivery.yaml"
    rng = random.Random(11)
    write_config(
        config_path, keywords, make_subscribers(subscriber_count, keywords, rng)
    )
    config = load_config(config_path)
    smtp, port = start_smtp_sink()
    try:
        with ArxivServer() as server:
            day_two = serve_days(server, keywords, new_per_keyword=5)
            settings = settings_for(
                work / "delivery",
                config_path,
                server.url,
                DIGEST_SMTP_HOST="127.0.0.1",
                DIGEST_SMTP_PORT=port,
                DIGEST_SMTP_SECURITY="none",
            )
            run_daily(config, settings, DAY_ONE)
            server.set_papers(day_two)
            result = run_daily(config, settings, DAY_TWO)

        product_rate = result.mails_sent / result.phase_s["send"]
        messages = prepared_messages(config, work / "delivery")
        pool_rate = asyncio.run(send_pooled(messages, port, 4))
        single_rate = asyncio.run(send_pooled(messages, port, 1))
        naive_rate = asyncio.run(send_naive(messages[:300], port))
    finally:
        smtp.terminate()
        smtp.wait()

    report(
        f"delivery, {result.mails_sent} personalised digests",
        f"{product_rate:.0f} mails/s ({product_rate / pool_rate:.0%} of the pool)",
        f"raw aiosmtplib, pool of 4: {pool_rate:.0f}/s; one connection: "
        f"{single_rate:.0f}/s; new connection per mail: {naive_rate:.0f}/s",
        verdict(
            ("80% of the pool", product_rate >= 0.8 * pool_rate),
            ("5x the naive loop", product_rate >= 5 * naive_rate),
        ),
    )
    return result.phase_s


# 3. Store growth


def synthetic_store(
    path: Path,
    papers: int,
    days: int,
    subscribers: int,
    yesterday: dict[str, list[RecordedPaper]],
) -> None:
    """Write a store as years of daily runs would leave it.

    yesterday holds, per keyword, the papers the last run fetched, so that the
    next run finds only the papers published since.
    """
    rng = random.Random(5)
    names = list(yesterday)
    tables: dict[str, dict] = {
        "papers": {},
        "keywords": {},
        "digests": {},
        "deliveries": {},
        "runs": {},
    }
    documents = tables["papers"]
    for name, fetched in yesterday.items():
        for paper in fetched:
            documents[str(len(documents) + 1)] = {
                **to_paper(paper).to_record(),
                "keywords": [name],
            }
    for number in range(papers - len(documents)):
        moment = START - timedelta(minutes=papers - number)
        # Ids from 2005.00000 on, apart from the papers the next run fetches.
        record = to_paper(make_paper(500_000 + number, rng, moment)).to_record()
        documents[str(len(documents) + 1)] = {
            **record,
            "keywords": [names[number % len(names)]],
        }
    for index, name in enumerate(names):
        tables["keywords"][str(index + 1)] = {
            "name": name,
            "first_fetched": "2021-01-01",
        }

    per_day = max(1, papers // days)
    delivery = 0
    for day_index in range(days):
        day = (DAY_ONE - timedelta(days=days - day_index)).isoformat()
        first = day_index * per_day
        chosen = [
            documents[str(n + 1)] for n in range(first, min(first + per_day, papers))
        ]
        ids = [document["paper_id"] for document in chosen]
        new_ids = {names[k % len(names)]: [i] for k, i in enumerate(ids)}
        tables["digests"][str(day_index + 1)] = {
            "date": day,
            "keywords": new_ids,
            "papers": dict(zip(ids, chosen, strict=True)),
        }
        tables["runs"][str(day_index + 1)] = {
            "date": day,
            "started_at": day,
            "finished_at": day,
        }
        for reader in range(subscribers):
            delivery += 1
            tables["deliveries"][str(delivery)] = {
                "date": day,
                "email": f"reader{reader}@example.org",
                "paper_ids": ids[:5],
                "status": "sent",
                "error": None,
                "kind": "daily",
                "at": day,
            }
    text = json.dumps(tables, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text, encoding="utf-8")


def run_child(code: str) -> tuple[float, int]:
    """Run Python code in a new process; return its wall time and peak RSS in bytes."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed_s = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"child failed with status {status}: {code[:80]}")
    return elapsed_s, usage.ru_maxrss * 1024


def bench_store(work: Path, papers: int, days: int) -> None:
    data_dir = work / "store"
    data_dir.mkdir()
    store_path = data_dir / STORE_FILE
    keywords = keyword_names(20)
    day_one, day_two = make_days(keywords, new_per_keyword=5)
    yesterday = dict(zip(keywords, day_one.values(), strict=True))
    synthetic_store(store_path, papers, days, subscribers=50, yesterday=yesterday)
    size_before = store_path.stat().st_size

    floor_code = (
        f"import json; p = {str(store_path)!r};"
        "d = json.load(open(p, encoding='utf-8'));"
        "open(p + '.copy', 'w', encoding='utf-8').write("
        "json.dumps(d, ensure_ascii=False, separators=(',', ':')))"
    )
    floor_s, floor_rss = run_child(floor_code)
    baseline_s, baseline_rss = run_child("import digest.daily")

    config_path = work / "store.yaml"
    rng = random.Random(3)
    write_config(config_path, keywords, make_subscribers(50, keywords, rng))
    with ArxivServer() as server:
        server.set_papers(day_two)
        run_code = (
            "from datetime import date; from pathlib import Path;"
            "from digest.config import load_config, Settings;"
            "from digest.daily import run_daily;"
            f"c = load_config(Path({str(config_path)!r}));"
            f"s = Settings(DIGEST_DATA_DIR={str(data_dir)!r},"
            f" DIGEST_ARXIV_URL={server.url!r}, DIGEST_ARXIV_DELAY=0);"
            "r = run_daily(c, s, date(2026, 1, 9));"
            "import json;"
            f"Path({str(work / 'phases.json')!r}).write_text(json.dumps(r.phase_s))"
        )
        run_s, run_rss = run_child(run_code)
    size_after = store_path.stat().st_size
    phases = json.loads((work / "phases.json").read_text())
    # The store's share: the run without start-up, the arXiv requests, the
    # rendering of mails and their sending.
    store_s = run_s - baseline_s - phases["fetch"] - phases["render"] - phases["send"]

    report(
        f"store: daily run over {papers:,} papers, {days:,} digests, 50 subscribers",
        f"store work {store_s:.1f} s of a {run_s - baseline_s:.1f} s run, "
        f"peak {run_rss / 1e6:.0f} MB",
        f"one load and dump: {floor_s - baseline_s:.1f} s, "
        f"peak {floor_rss / 1e6:.0f} MB",
        verdict(
            ("2x the floor", store_s <= 2 * (floor_s - baseline_s)),
            ("memory under 4x the file", run_rss < 4 * size_before),
        ),
    )
    report(
        "store file size",
        f"{size_before / 1e6:.0f} MB before the run, {size_after / 1e6:.0f} MB after",
        "grows with papers kept, not with runs",
        verdict(("no growth by run", size_after <= size_before)),
    )


# 4. Rendering


def bench_rendering(count: int) -> None:
    rng = random.Random(13)
    archive_papers = {}
    for n in range(6):
        paper = to_paper(make_paper(n, rng, START))
        archive_papers[paper.paper_id] = paper
    ids = list(archive_papers)
    digest = build_digest(
        DAY_TWO,
        ["A", "B"],
        {"A": ids[:3], "B": ids[3:]},
        archive_papers,
        recipient_name="Reader",
    )
    renderer = Renderer()
    started = time.perf_counter()
    for _ in range(count):
        renderer.render(digest, "html")
    product_ms = (time.perf_counter() - started) / count * 1000

    template = renderer.environment.get_template(TEMPLATE_NAMES["html"])
    started = time.perf_counter()
    for _ in range(count):
        template.render(digest=digest)
    plain_ms = (time.perf_counter() - started) / count * 1000
    report(
        f"rendering {count:,} HTML digests",
        f"{product_ms:.2f} ms per digest",
        f"plain Jinja2, same template and data: {plain_ms:.2f} ms",
        verdict(("2x plain Jinja2", product_ms <= 2 * plain_ms)),
    )


# 5. Whole run


def bench_whole_run(work: Path, subscriber_count: int) -> None:
    keywords = keyword_names(20)
    config_path = work / "whole.yaml"
    rng = random.Random(17)
    write_config(
        config_path, keywords, make_subscribers(subscriber_count, keywords, rng)
    )
    data_dir = work / "whole"
    smtp, port = start_smtp_sink()
    try:
        with ArxivServer() as server:
            day_two = serve_days(server, keywords, new_per_keyword=5)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
            env.update(
                DIGEST_CONFIG=str(config_path),
                DIGEST_DATA_DIR=str(data_dir),
                DIGEST_ARXIV_URL=server.url,
                DIGEST_ARXIV_DELAY="0",
                DIGEST_SMTP_HOST="127.0.0.1",
                DIGEST_SMTP_PORT=str(port),
                DIGEST_SMTP_SECURITY="none",
            )
            command = [sys.executable, "-m", "digest", "once", "--date"]
            subprocess.run(
                [*command, DAY_ONE.isoformat()],
                env=env,
                check=True,
                capture_output=True,
            )
            server.set_papers(day_two)
            with (work / "out").open("w") as out, (work / "err").open("w") as err:
                started = time.perf_counter()
                process = subprocess.Popen(
                    [*command, DAY_TWO.isoformat()], env=env, stdout=out, stderr=err
                )
                _, status, usage = os.wait4(process.pid, 0)
                elapsed_s = time.perf_counter() - started
            stdout = (work / "out").read_text()
            stderr = (work / "err").read_text()
    finally:
        smtp.terminate()
        smtp.wait()
    finished = [line for line in stderr.splitlines() if "finished in" in line]
    phases = finished[-1].split("(", 1)[1].rstrip(")") if finished else "?"
    report(
        f"whole run: 20 keywords x 100 papers, {subscriber_count:,} subscribers",
        f"{elapsed_s:.1f} s, peak {usage.ru_maxrss / 1e3:.0f} MB, exit {status}",
        phases,
        stdout.strip(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    arguments = parser.parse_args()
    quick = arguments.quick
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        bench_requests(work, keyword_count=20, delay_s=0.1 if quick else 0.25)
        bench_delivery(work, 200 if quick else 2000)
        bench_rendering(1000 if quick else 10_000)
        bench_whole_run(work, 200 if quick else 2000)
        bench_store(work, 20_000 if quick else 200_000, 180 if quick else 1800)
        shutil.rmtree(work, ignore_errors=True)

    print("| benchmark | measured | floor | verdict |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
