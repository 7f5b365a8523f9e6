"""The collector's sharded id index: the same answers as one dict, retention per shard."""

from __future__ import annotations

from kubetune.collector.ids import SHARDS, IdIndex


def test_lookups_and_inserts_answer_as_one_dict_would() -> None:
    index = IdIndex()
    assert index.add([f"a{i}" for i in range(1000)], 1.0) == 1000
    assert len(index) == 1000 and "a999" in index and "b0" not in index
    assert index.isdisjoint(["b0", "b1"]) and not index.isdisjoint(["b0", "a5"])
    # ids already there (or twice in the batch) are not new and keep their first time
    assert index.add(["a1", "b1", "b1", "b2"], 2.0) == 2
    assert len(index) == 1002
    assert index.shards[hash("a1") % SHARDS]["a1"] == 1.0
    assert sum(1 for shard in index.shards if shard) == SHARDS  # the ids spread over all
    index.add_new(["c1", "c2"], 3.0)  # a commit's ids: new and distinct, not looked up
    assert len(index) == 1004 == sum(map(len, index.shards)) and "c2" in index


def test_trim_forgets_the_oldest_by_time_then_by_count() -> None:
    index = IdIndex()
    index.add([f"old{i}" for i in range(500)], 10.0)
    index.add([f"new{i}" for i in range(500)], 20.0)
    index.trim(cutoff=15.0, max_ids=10_000)
    assert len(index) == 500 and "new3" in index and "old3" not in index
    index.trim(cutoff=0.0, max_ids=SHARDS * 2)  # at most 2 per shard, the newest kept
    assert 0 < len(index) <= SHARDS * 2
    assert all(len(shard) <= 2 for shard in index.shards)
    assert len(index) == sum(map(len, index.shards))
