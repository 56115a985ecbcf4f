"""The complexity stage's evaluation set: a seeded, class-stratified sample of the test split, never its first
jets, the same whatever the reading order (in memory or streamed) and for every run of a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from softsym.data.splits import StreamingSplits, load_splits
from softsym.data.stratify import allocate, jet_keys, sample_split
from softsym.data.stream_plan import plan_stream

FIXTURES = Path(__file__).parent / "fixtures" / "mktree"
PATHS = sorted(str(p) for p in FIXTURES.iterdir())  # QCD_000 then TTBar_000: one process per file


def test_allocation_is_proportional_and_keeps_small_classes():
    assert allocate([300, 100], 40).tolist() == [30, 10]
    assert allocate([3, 5], 100).tolist() == [3, 5]
    take = allocate([1000, 7, 1], 20)
    assert take.sum() == 20 and take[2] == 1 and take[1] >= 1
    counts = np.array([17, 29, 54])
    for n in range(3, 100):
        take = allocate(counts, n)
        assert take.sum() == n and np.all(np.abs(take - n * counts / counts.sum()) < 1 + 1e-9)


def test_eval_set_holds_both_classes_in_proportion_when_files_hold_one_process():
    splits = load_splits(PATHS, max_particles=16, fractions=(0.4, 0.2, 0.4), seed=11)
    test = splits.arrays("test")
    n = 16
    first = test.subset(np.arange(n))
    assert np.all(first.labels == 0)  # "the first n" test jets would all be of one process
    sample = sample_split(splits, "test", n, seed=11)
    counts = np.bincount(sample.labels, minlength=2)
    expected = n * np.bincount(test.labels, minlength=2) / len(test)
    assert counts.sum() == n and np.all(counts > 0) and np.all(np.abs(counts - expected) < 1)
    again = sample_split(splits, "test", n, seed=11)
    assert np.array_equal(again.p4, sample.p4)  # the same jets for every run of the seed
    # order-independent: the jets reversed give the same sample; streamed from the files too
    reversed_splits = type(splits)(splits.train, splits.val, test.subset(np.arange(len(test))[::-1]), splits.summary)
    assert np.array_equal(sample_split(reversed_splits, "test", n, seed=11).p4, sample.p4)
    streamed = StreamingSplits(plan_stream(PATHS, max_particles=16, fractions=(0.4, 0.2, 0.4), seed=11))
    s_test = streamed.arrays("test")
    s_sample = sample_split(streamed, "test", n, seed=11)
    assert np.array_equal(np.bincount(s_sample.labels, minlength=2),
                          allocate(np.bincount(s_test.labels, minlength=2), n))
    keys = jet_keys(s_test.p4, 11)
    for c in (0, 1):  # the streamed sample is the smallest-key jets of each class of the streamed split
        k = np.sort(keys[s_test.labels == c])[: int((s_sample.labels == c).sum())]
        assert np.array_equal(np.sort(jet_keys(s_sample.p4[s_sample.labels == c], 11)), k)


def test_whole_split_when_n_is_large():
    splits = load_splits(PATHS, max_particles=16, seed=2)
    assert len(sample_split(splits, "test", None, 2)) == len(splits.test)
    assert len(sample_split(splits, "test", 10_000, 2)) == len(splits.test)
    empty = load_splits(PATHS, max_particles=16, fractions=(1.0, 0.0, 0.0), seed=2)
    with pytest.raises(ValueError, match="empty"):
        sample_split(empty, "test", 4, 2)
