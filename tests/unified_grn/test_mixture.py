"""The data mixture: weights, determinism, exact resume, disjoint rank shards, skipped rows counted."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from unified_grn.data import DataMixture, Example, Source, SourceConfig, build_source


class Rows(Source):
    """``n`` rows of text ``"name:i"``; rows in ``bad`` raise like a corrupt file."""

    task = "text"

    def __init__(
        self, name: str, n: int, weight: float = 1.0, bad: set[int] = frozenset(), iid: bool = False
    ):
        super().__init__(name, weight)
        self.n, self.bad, self.iid = n, set(bad), iid
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def read(self, index: int, rng: random.Random | None) -> Example:
        self.reads += 1
        if index in self.bad:
            raise OSError("corrupt")
        return Example("text", text=f"{self.name}:{index}:{rng.random():.6f}")


def make(bad: set[int] = frozenset(), **kwargs) -> DataMixture:
    sources = [Rows("a", 7, 1.0), Rows("b", 11, 2.0, bad=bad), Rows("c", 5, 7.0, iid=True)]
    return DataMixture(sources, **kwargs)


def keys(examples: list[Example]) -> list[tuple]:
    return [(ex.position, ex.source, ex.index, ex.text) for ex in examples]


def test_weights_are_respected():
    n = 20000
    counts = {"a": 0, "b": 0, "c": 0}
    for ex in make(seed=3).take(n):
        counts[ex.source] += 1
    for name, share in (("a", 0.1), ("b", 0.2), ("c", 0.7)):
        assert abs(counts[name] / n - share) < 0.015  # > 4 standard deviations
    only = DataMixture([Rows("a", 3), Rows("b", 3)], weights=[0.0, 1.0]).take(50)
    assert {ex.source for ex in only} == {"b"}


def test_stream_is_deterministic_and_covers_each_epoch():
    first, again = make(seed=5, block_size=64).take(300), make(seed=5, block_size=64).take(300)
    assert keys(first) == keys(again)
    assert keys(make(seed=6, block_size=64).take(300)) != keys(first)
    a_rows = [ex.index for ex in first if ex.source == "a"]
    assert sorted(a_rows[:7]) == list(range(7)) and sorted(a_rows[7:14]) == list(range(7))  # permutations
    assert a_rows[:7] != a_rows[7:14]  # a new order each epoch
    c_rows = [ex.index for ex in first if ex.source == "c"]
    assert c_rows[:12] == [k % 5 for k in range(12)]  # independent draws are read in order


def test_block_size_is_only_a_batching_detail_within_a_block():
    one = make(seed=2, block_size=10_000).take(500)
    assert [ex.position for ex in one] == list(range(500))


@pytest.mark.parametrize("taken", [0, 1, 37, 130])
def test_resume_from_a_state_dict_continues_identically(taken):
    mix = make(bad={1, 4}, seed=9, block_size=16)
    mix.take(taken)
    state = json.loads(json.dumps(mix.state_dict()))  # checkpoints store it as JSON
    expected = mix.take(100)
    resumed = make(bad={1, 4}, seed=9, block_size=16)
    resumed.load_state_dict(state)
    assert keys(resumed.take(100)) == keys(expected)
    assert resumed.counters() == mix.counters()


def test_resume_does_not_reread_known_bad_rows():
    mix = make(bad={0, 1, 2, 3}, seed=1, block_size=32)
    mix.take(200)
    state = mix.state_dict()
    resumed = make(bad={0, 1, 2, 3}, seed=1, block_size=32)
    resumed.load_state_dict(state)
    assert resumed.skipped() == {"a": 0, "b": 4, "c": 0} and resumed.sources[1].reads == 0
    taken = resumed.take(200)
    assert resumed.sources[1].reads == sum(ex.source == "b" for ex in taken)  # known bad rows: not read
    assert resumed.skipped()["b"] == 4


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_are_disjoint_and_cover_the_stream(world_size):
    bad = {2, 5}
    single = {
        ex.position: (ex.source, ex.index, ex.text) for ex in make(bad=bad, seed=4, block_size=50).take(600)
    }
    shards = [
        make(bad=bad, seed=4, block_size=50, rank=r, world_size=world_size).take(150)
        for r in range(world_size)
    ]
    seen: dict[int, tuple] = {}
    for rank, shard in enumerate(shards):
        for ex in shard:
            assert ex.position % world_size == rank and ex.position not in seen
            seen[ex.position] = (ex.source, ex.index, ex.text)
    horizon = min(max(ex.position for ex in shard) for shard in shards)
    covered = {p: v for p, v in single.items() if p <= horizon}
    assert {p: v for p, v in seen.items() if p <= horizon} == covered and len(covered) > 250


def test_unreadable_rows_are_skipped_and_counted():
    mix = make(bad={0, 3, 6}, seed=0)
    examples = mix.take(400)
    assert all(not (ex.source == "b" and ex.index in {0, 3, 6}) for ex in examples)
    counters = mix.counters()
    assert counters["data/b/skipped"] == 3 and counters["data/skipped"] == 3
    assert sum(counters[f"data/{n}/samples"] for n in "abc") == 400
    dead = DataMixture([Rows("x", 4, bad={0, 1, 2, 3})], max_consecutive_skips=20)
    with pytest.raises(RuntimeError, match="unreadable samples in a row"):
        next(dead)


def test_bad_mixtures_and_mismatched_states_are_refused():
    with pytest.raises(ValueError, match="unique"):
        DataMixture([Rows("a", 2), Rows("a", 3)])
    with pytest.raises(ValueError, match="not all zero"):
        DataMixture([Rows("a", 2)], weights=[0.0])
    with pytest.raises(ValueError, match="rank"):
        DataMixture([Rows("a", 2)], rank=2, world_size=2)
    state = make(seed=1).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        make(seed=1, rank=0, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        make(seed=2).load_state_dict(state)


def test_mixture_of_real_sources(tmp_path):
    (tmp_path / "c.txt").write_text("alpha\nbeta\ngamma\n")
    sources = [
        build_source(SourceConfig("shapes", size=32, weight=3.0)),
        build_source(SourceConfig("text", str(tmp_path / "c.txt"), weight=1.0, name="corpus")),
    ]
    examples = DataMixture(sources, seed=0).take(24)
    tasks = {ex.task for ex in examples}
    assert tasks == {"t2i", "text"} and np.mean([ex.task == "t2i" for ex in examples]) > 0.5
    assert {ex.text for ex in examples if ex.source == "corpus"} <= {"alpha", "beta", "gamma"}


@pytest.mark.parametrize("world_size", [1, 2])
def test_grouped_streams_read_one_source_per_group_and_keep_the_mix(world_size):
    group = 8
    shards = [
        make(seed=3, block_size=20, group_size=group, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    examples = sorted(
        (ex for shard in shards for ex in shard.take(12000 // world_size)), key=lambda e: e.position
    )
    by_group: dict[int, set[str]] = {}
    for ex in examples:
        by_group.setdefault(ex.position // group, set()).add(ex.source)
    assert all(len(sources) == 1 for sources in by_group.values())  # one source per global batch
    n = len(examples)
    for name, share in (("a", 0.1), ("b", 0.2), ("c", 0.7)):
        # one choice per group: the share's standard deviation is sqrt(group) times larger
        assert abs(sum(ex.source == name for ex in examples) / n - share) < 0.05
    assert shards[0].block_size % group == 0


def test_grouped_stream_resumes_identically_and_group_one_is_the_plain_stream():
    mix = make(seed=9, block_size=16, group_size=4)
    mix.take(37)
    state = json.loads(json.dumps(mix.state_dict()))
    expected = mix.take(100)
    resumed = make(seed=9, block_size=16, group_size=4)
    resumed.load_state_dict(state)
    assert keys(resumed.take(100)) == keys(expected)
    assert keys(make(seed=9, group_size=1).take(200)) == keys(make(seed=9).take(200))
    with pytest.raises(ValueError, match="group_size"):
        make(group_size=0)
