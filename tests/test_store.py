"""The TinyDB store: what counts as new, revisions, archives and crash safety."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from factories import make_paper

from digest.errors import ConfigError, StoreError
from digest.store import JOURNAL_FILE, STORE_FILE, Store, locked_store

DAY = date(2026, 1, 9)
NOW = datetime(2026, 1, 9, 6, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    opened = Store.open(tmp_path)
    yield opened
    opened.close()


def reopen(store: Store) -> Store:
    store.close()
    return Store.open(store.path.parent)


def test_unknown_paper_is_new(store):
    new_ids = store.merge_papers(
        "K", [make_paper("2601.00001"), make_paper("2601.00002")]
    )

    assert new_ids == ["2601.00001", "2601.00002"]


def test_revised_paper_is_not_new(store):
    store.merge_papers("K", [make_paper("2601.00001", version=1)])
    later = NOW + timedelta(days=3)
    revised = make_paper("2601.00001", version=5, summary="Revised.", updated_at=later)

    new_ids = store.merge_papers("K", [revised])

    assert new_ids == []
    [paper] = store.papers_of("K", limit=10)
    assert paper.version == 5
    assert paper.summary == "Revised."
    assert paper.updated_at == later


def test_older_answer_does_not_downgrade(store):
    store.merge_papers("K", [make_paper("2601.00001", version=3, title="v3")])

    store.merge_papers("K", [make_paper("2601.00001", version=2, title="v2")])

    [paper] = store.papers_of("K", limit=10)
    assert paper.version == 3
    assert paper.title == "v3"


def test_known_paper_is_new_for_another_keyword(store):
    store.merge_papers("A", [make_paper("2601.00001")])

    assert store.merge_papers("B", [make_paper("2601.00001")]) == ["2601.00001"]
    assert store.merge_papers("A", [make_paper("2601.00001")]) == []
    assert [p.paper_id for p in store.papers_of("B", limit=10)] == ["2601.00001"]


def test_papers_of_keyword_newest_first_and_limited(store):
    papers = [
        make_paper(f"2601.0000{i}", updated_at=NOW + timedelta(hours=i))
        for i in range(1, 6)
    ]
    store.merge_papers("K", papers)

    newest = store.papers_of("K", limit=3)

    assert [p.paper_id for p in newest] == ["2601.00005", "2601.00004", "2601.00003"]


def test_everything_survives_reopening(store):
    paper = make_paper("2601.00001", title="Ünïcödé 🚀 | <b>")
    store.merge_papers("K", [paper])
    store.add_keyword("K", DAY)
    store.archive_digest(DAY, {"K": ["2601.00001"]}, {"2601.00001": paper})
    store.record_delivery(DAY, "a@example.org", ["2601.00001"], None, NOW)

    reopened = reopen(store)

    assert reopened.is_known_keyword("K")
    assert reopened.papers_of("K", limit=10) == [paper]
    assert reopened.digest_of(DAY) == ({"K": ["2601.00001"]}, {"2601.00001": paper})
    assert reopened.delivered_ids(DAY, "a@example.org") == {"2601.00001"}
    reopened.close()


def test_archived_digest_keeps_paper_as_it_was(store):
    first = make_paper("2601.00001", version=1, summary="First version.")
    store.merge_papers("K", [first])
    store.archive_digest(DAY, {"K": ["2601.00001"]}, {"2601.00001": first})

    store.merge_papers("K", [make_paper("2601.00001", version=2, summary="Second.")])

    _, papers = store.digest_of(DAY)
    assert papers["2601.00001"].summary == "First version."


def test_second_archive_of_same_date_extends_it(store):
    papers = {i: make_paper(i) for i in ("2601.00001", "2601.00002", "2601.00003")}
    store.archive_digest(DAY, {"A": ["2601.00001"]}, papers)

    store.archive_digest(
        DAY, {"A": ["2601.00002", "2601.00001"], "B": ["2601.00003"]}, papers
    )

    new_ids, archived = store.digest_of(DAY)
    assert new_ids == {"A": ["2601.00001", "2601.00002"], "B": ["2601.00003"]}
    assert sorted(archived) == ["2601.00001", "2601.00002", "2601.00003"]


def test_failed_delivery_is_not_delivered(store):
    store.record_delivery(DAY, "a@example.org", ["2601.00001"], "rejected: 550", NOW)
    store.record_delivery(DAY, "a@example.org", ["2601.00002"], None, NOW)
    store.record_delivery(date(2026, 1, 8), "a@example.org", ["2601.00003"], None, NOW)

    assert store.delivered_ids(DAY, "a@example.org") == {"2601.00002"}
    assert store.delivered_ids(DAY, "b@example.org") == set()


def test_missing_store_file_starts_afresh(tmp_path):
    store = Store.open(tmp_path)

    assert store.papers_of("K", limit=10) == []
    assert not (tmp_path / STORE_FILE).exists()
    store.close()


def test_store_file_is_private(store):
    store.merge_papers("K", [make_paper("2601.00001")])

    assert store.path.stat().st_mode & 0o777 == 0o600


def test_paper_listed_twice_is_stored_once(store):
    paper = make_paper("2601.00001")

    new_ids = store.merge_papers("K", [paper, paper])

    assert new_ids == ["2601.00001"]
    assert len(store.papers.all()) == 1


def test_store_file_is_replaced_whole(store):
    store.merge_papers("K", [make_paper("2601.00001")])

    files = sorted(p.name for p in store.path.parent.iterdir())

    assert files == [STORE_FILE]
    assert json.loads(store.path.read_text("utf-8"))["papers"]


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[1, 2]",
        '{"papers": ',
        '{"papers": []}',
        '{"papers": {"1": "text"}}',
        '{"papers": {"1": {"foo": 1}}}',
        '{"deliveries": {"1": {"date": "2026-01-09"}}}',
    ],
)
def test_corrupt_store_is_one_clear_error(tmp_path, content):
    (tmp_path / STORE_FILE).write_text(content, encoding="utf-8")

    with pytest.raises(StoreError) as caught:
        Store.open(tmp_path)

    assert str(tmp_path / STORE_FILE) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unwritable_data_dir_is_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")

    with pytest.raises(ConfigError, match="DIGEST_DATA_DIR: .*cannot create"):
        Store.open(blocker / "data")


def test_delivery_is_journaled_then_merged(tmp_path):
    with locked_store(tmp_path) as store:
        store.record_delivery(DAY, "a@example.org", ["2601.00001"], None, NOW)
        journal = store.journal_path.read_text(encoding="utf-8")

    data = json.loads((tmp_path / STORE_FILE).read_text(encoding="utf-8"))
    assert journal.count("\n") == 1
    assert not (tmp_path / JOURNAL_FILE).exists()
    assert [d["email"] for d in data["deliveries"].values()] == ["a@example.org"]


def test_journal_left_by_crash_is_merged_once(tmp_path):
    store = Store.open(tmp_path)
    store.record_delivery(DAY, "a@example.org", ["2601.00001"], None, NOW)
    journal = tmp_path / JOURNAL_FILE
    merged_line = journal.read_text("utf-8")
    store.merge_journal()
    store.record_delivery(DAY, "b@example.org", ["2601.00002"], None, NOW)
    store.close()
    # A kill between the store write and the journal's removal leaves a merged
    # record in the journal, and a kill while appending leaves half a line.
    cut_line = '{"date": "2026-01'
    journal.write_text(merged_line + journal.read_text("utf-8") + cut_line, "utf-8")

    with locked_store(tmp_path) as reopened:
        records = reopened.deliveries_of(DAY)

    assert sorted(r["email"] for r in records) == ["a@example.org", "b@example.org"]
    assert not journal.exists()


def test_unmerged_journal_counts_as_delivered(tmp_path):
    store = Store.open(tmp_path)
    store.record_delivery(DAY, "a@example.org", ["2601.00001"], None, NOW)
    store.close()

    reader = Store.open(tmp_path)

    assert reader.delivered_ids(DAY, "a@example.org") == {"2601.00001"}
    assert not (tmp_path / STORE_FILE).exists()
    reader.close()


def test_prune_keeps_readme_rows_only(store):
    papers = [
        make_paper(f"2601.0000{i}", updated_at=NOW + timedelta(hours=i))
        for i in range(1, 6)
    ]
    store.merge_papers("K", papers)

    store.prune(DAY, archive_days=365, readme_rows={"K": 2})

    assert [p.paper_id for p in store.papers_of("K", limit=10)] == [
        "2601.00005",
        "2601.00004",
    ]
    assert len(store.papers.all()) == 2


def test_pruned_paper_is_not_new_again(store):
    old = make_paper("2601.00001", updated_at=NOW - timedelta(days=30))
    store.merge_papers("K", [old, make_paper("2601.00002")])
    store.prune(DAY, archive_days=365, readme_rows={"K": 1})

    revised = make_paper("2601.00001", version=2, updated_at=NOW + timedelta(days=1))
    new_ids = reopen(store).merge_papers("K", [revised])

    assert new_ids == []


def test_pruned_keyword_papers_stay_seen(store):
    store.merge_papers("Old", [make_paper("2601.00001")])
    store.prune(DAY, archive_days=365, readme_rows={"New": 100})

    reopened = reopen(store)

    assert reopened.papers.all() == []
    assert reopened.merge_papers("Old", [make_paper("2601.00001")]) == []
    reopened.close()


def test_prune_drops_old_archive_records(store):
    paper = make_paper("2601.00001")
    old_day = DAY - timedelta(days=400)
    for day in (old_day, DAY):
        store.archive_digest(day, {"K": ["2601.00001"]}, {"2601.00001": paper})
        store.record_run(day, NOW, NOW)
        store.record_delivery(day, "a@example.org", ["2601.00001"], None, NOW)
    store.merge_journal()

    store.prune(DAY, archive_days=365, readme_rows={"K": 100})

    assert store.digest_dates() == [DAY]
    assert store.deliveries_of(old_day) == []
    assert store.delivered_ids(DAY, "a@example.org") == {"2601.00001"}
    assert store.latest_completed_run() == DAY
    assert not store.has_completed_run(old_day)


def test_journal_outlives_failed_batch(tmp_path):
    store = Store.open(tmp_path)
    store.record_delivery(DAY, "a@example.org", ["2601.00001"], None, NOW)

    with pytest.raises(RuntimeError), store.batch():
        store.merge_journal()
        raise RuntimeError("killed before the batch was written")
    store.close()

    assert (tmp_path / JOURNAL_FILE).exists()
    reopened = Store.open(tmp_path)
    assert reopened.delivered_ids(DAY, "a@example.org") == {"2601.00001"}
    reopened.close()
