"""The collector's id index: the answers of a set, retention by the commit log."""

from __future__ import annotations

from kubetune.collector.ids import SHARDS, IdIndex


def test_lookups_and_inserts_answer_as_one_set_would() -> None:
    index = IdIndex()
    assert index.add([f"a{i}" for i in range(1000)], 1.0) == 1000
    assert len(index) == 1000 and "a999" in index and "b0" not in index
    assert index.isdisjoint(["b0", "b1"]) and not index.isdisjoint(["b0", "a5"])
    assert index.isdisjoint([])
    # ids already there (or twice in the batch) are not new and keep their first time
    assert index.add(["a1", "b1", "b1", "b2"], 2.0) == 2
    assert len(index) == 1002
    assert index.add(["a1", "b1"], 3.0) == 0
    assert [sorted(ids) for _, ids in index.log][1:] == [["b1", "b2"]]  # no empty entry
    index.add_new(["c1", "c2"], 3.0)  # a commit's ids: new and distinct, not looked up
    assert len(index) == 1004 and "c2" in index


def test_trim_forgets_the_oldest_by_time_then_by_count() -> None:
    index = IdIndex()
    index.add([f"old{i}" for i in range(500)], 10.0)
    index.add([f"new{i}" for i in range(500)], 20.0)
    index.add_new([f"newer{i}" for i in range(100)], 30.0)
    index.trim(cutoff=15.0, max_ids=10_000)
    assert len(index) == 600 and "new3" in index and "old3" not in index
    index.trim(cutoff=0.0, max_ids=200)  # whole entries, the oldest first: the newest kept
    assert len(index) == 100 and "newer99" in index and "new3" not in index
    index.trim(cutoff=0.0, max_ids=0)
    assert len(index) == 0 and not index.log


def test_an_id_trimmed_and_committed_again_is_kept_by_its_new_entry() -> None:
    index = IdIndex()
    index.add_new(["x", "y"], 10.0)
    index.trim(cutoff=11.0, max_ids=100)
    assert "x" not in index
    index.add_new(["x"], 20.0)  # posted again after its retention: a new record
    index.add(["z"], 5.0)  # another writer's segment, older: logged after, kept by order
    index.trim(cutoff=15.0, max_ids=100)
    assert "x" in index and "z" in index
    index.trim(cutoff=25.0, max_ids=100)
    assert len(index) == 0


def test_the_ids_spread_over_every_shard() -> None:
    index = IdIndex()
    index.add_new([f"id-{i}" for i in range(1000)], 1.0)
    assert all(index.shards) and sum(map(len, index.shards)) == len(index) == 1000
    assert all(f"id-{i}" in index.shards[hash(f"id-{i}") % SHARDS] for i in range(1000))
