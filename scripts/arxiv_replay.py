#!/usr/bin/env python3
"""Serve recorded arXiv papers on 127.0.0.1, to try `digest` without the internet.

Every keyword of the configuration gets the papers of the published Daily Papers
page in tests/data that carry the same heading, or all of that page's papers
for other keywords. With --hold-back N the newest N papers of each keyword are
left out, as if arXiv had not published them yet: run `digest once` against
that, then restart without --hold-back and run it again to get mails.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from arxiv_server import ArxivServer  # noqa: E402
from reference import load_reference  # noqa: E402

from digest.arxiv_client import build_query  # noqa: E402
from digest.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "subscribers.yaml")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--hold-back",
        type=int,
        default=0,
        metavar="N",
        help="leave out the newest N papers of each keyword",
    )
    arguments = parser.parse_args()

    config = load_config(arguments.config)
    sections = {name.casefold(): papers for name, papers in load_reference().items()}
    every_paper = {p.paper_id: p for papers in sections.values() for p in papers}
    server = ArxivServer(port=arguments.port)
    for keyword in config.keywords:
        papers = sections.get(keyword.name.casefold(), list(every_paper.values()))
        papers = sorted(papers, key=lambda paper: paper.updated, reverse=True)
        server.add(build_query(keyword), papers[arguments.hold_back :])

    with server:
        print(f"DIGEST_ARXIV_URL={server.url}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    main()
