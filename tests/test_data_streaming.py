"""The streaming loader: stratified deterministic splits, every jet once per epoch, mixed batches, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from softsym.data.errors import DataError
from softsym.data.jets import JetBatch
from softsym.data.loaders import InMemoryLoader, JetLoader
from softsym.data.reader import read_jets
from softsym.data.splits import DatasetSplits, JetSplits, StreamingSplits, load_splits
from softsym.data.stream_plan import plan_stream
from softsym.data.streaming import StreamingJetLoader

FIXTURES = Path(__file__).parent / "fixtures"
PATHS = [str(FIXTURES / "rootio" / "*.root")]  # one QCD file, one TTBar file (48 jets each)


def jet_keys(p4: np.ndarray) -> list[bytes]:
    """One hashable key per jet: its padded 4-vectors."""
    return [row.tobytes() for row in p4.reshape(len(p4), -1)]


def epoch(loader: StreamingJetLoader) -> list[JetBatch]:
    return list(loader)


@pytest.fixture(scope="module")
def plan():
    return plan_stream(PATHS, max_particles=16, seed=7, chunk_entries=8)


@pytest.fixture(scope="module")
def all_jets():
    arrays, _ = read_jets(PATHS, max_particles=16)
    return arrays


def test_splits_are_stratified_and_deterministic(plan):
    counts = {split: plan.n_jets_per_class(split) for split in ("train", "val", "test")}
    total = {cls: sum(c[cls] for c in counts.values()) for cls in plan.classes}
    assert total == {"QCD": 48, "Tbqq": 48}  # labelled jets, the empty one included
    signal_frac = total["Tbqq"] / sum(total.values())
    for split, per_class in counts.items():
        n = sum(per_class.values())
        assert abs(per_class["Tbqq"] / n - signal_frac) <= 0.05 * signal_frac, split
    assert counts["train"] == {"QCD": 34, "Tbqq": 34}  # round(0.7 * 48), per file and class
    again = plan_stream(PATHS, max_particles=16, seed=7, chunk_entries=8)
    for split in ("train", "val", "test"):
        assert jet_keys(np.concatenate([b.p4.numpy() for b in StreamingJetLoader(again, split, shuffle=False)])) \
            == jet_keys(np.concatenate([b.p4.numpy() for b in StreamingJetLoader(plan, split, shuffle=False)]))


def test_each_jet_once_per_epoch_and_splits_partition_the_data(plan, all_jets):
    seen = {}
    for split in ("train", "val", "test"):
        loader = StreamingJetLoader(plan, split, batch_size=16)
        batches = epoch(loader)
        assert all(isinstance(b, JetBatch) and b.p4.shape[1:] == (16, 4) for b in batches)
        keys = jet_keys(np.concatenate([b.p4.numpy() for b in batches]))
        assert len(keys) == len(set(keys)), f"{split}: a jet came twice"
        assert len(keys) <= loader.n_jets  # the empty jets are dropped as they are met
        seen[split] = set(keys)
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"])
    assert seen["train"] | seen["val"] | seen["test"] == set(jet_keys(all_jets.p4))


def test_epochs_reshuffle_same_jets(plan):
    loader = StreamingJetLoader(plan, "train", batch_size=16)
    loader.set_epoch(0)
    first = epoch(loader)
    first_again = epoch(loader)
    loader.set_epoch(1)
    second = epoch(loader)
    keys = [jet_keys(np.concatenate([b.p4.numpy() for b in e])) for e in (first, first_again, second)]
    assert keys[0] == keys[1] and keys[0] != keys[2] and sorted(keys[0]) == sorted(keys[2])
    labels = np.concatenate([b.labels.numpy() for b in first])
    p4 = np.concatenate([b.p4.numpy() for b in first])
    # labels travel with their jets: every Tbqq jet comes from a TTBar file (compare with read_jets)
    arrays, _ = read_jets(PATHS, max_particles=16)
    label_of = dict(zip(jet_keys(arrays.p4), arrays.labels.tolist(), strict=True))
    assert [label_of[k] for k in jet_keys(p4)] == labels.tolist()


@pytest.mark.parametrize("shuffle_buffer", [16, 32_768])  # 2 chunks of 8 jets held, or all of them
def test_batches_mix_classes_though_files_hold_one(plan, shuffle_buffer):
    batches = epoch(StreamingJetLoader(plan, "train", batch_size=16, shuffle_buffer=shuffle_buffer))
    full = [b for b in batches if len(b) == 16]
    mixed = [b for b in full if len(set(b.labels.tolist())) == 2]
    assert len(mixed) >= 0.75 * len(full)


def test_two_workers_same_jets_as_none(plan):
    alone = epoch(StreamingJetLoader(plan, "train", batch_size=16, loader_workers=0))
    workers = epoch(StreamingJetLoader(plan, "train", batch_size=16, loader_workers=2))
    assert sorted(jet_keys(np.concatenate([b.p4.numpy() for b in workers]))) == \
        sorted(jet_keys(np.concatenate([b.p4.numpy() for b in alone])))
    assert all(b.scalars.dtype == alone[0].scalars.dtype and b.labels.dtype == alone[0].labels.dtype
               for b in workers)


@pytest.mark.parametrize("loader_workers", [0, 2])
def test_ddp_ranks_stream_disjoint_shares_of_the_split(plan, loader_workers):
    """Under DDP each rank reads its own chunks; together the ranks see every jet of the epoch once."""
    alone = jet_keys(np.concatenate([b.p4.numpy() for b in epoch(StreamingJetLoader(plan, "train", batch_size=16))]))
    shares = []
    for rank in range(2):
        loader = StreamingJetLoader(plan, "train", batch_size=16, rank=rank, world_size=2,
                                    loader_workers=loader_workers)
        loader.set_epoch(3)
        batches = epoch(loader)
        assert batches and all(len(b) <= 8 for b in batches)  # the global batch of 16, halved
        shares.append(set(jet_keys(np.concatenate([b.p4.numpy() for b in batches]))))
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(alone)
    with pytest.raises(DataError, match="divisible by the 2 DDP processes"):
        StreamingJetLoader(plan, "train", batch_size=15, rank=0, world_size=2)


def test_loader_interface(plan):
    loader = StreamingJetLoader(plan, "val", batch_size=8)
    assert loader.class_names == ("QCD", "Tbqq") and len(loader.scalar_names) == 6
    assert loader.n_jets == sum(plan.n_jets_per_class("val").values())
    with pytest.raises(DataError, match="unknown split"):
        StreamingJetLoader(plan, "dev")
    capped = plan_stream(PATHS, max_particles=16, max_jets_per_class=10)
    assert {cls: sum(capped.n_jets_per_class(s)[cls] for s in ("train", "val", "test"))
            for cls in capped.classes} == {"QCD": 10, "Tbqq": 10}


def test_both_loaders_and_both_splits_satisfy_their_protocols(plan, all_jets):
    streamed = StreamingSplits(plan)
    in_memory = load_splits(PATHS, max_particles=16, seed=7)
    assert isinstance(in_memory, DatasetSplits)
    for splits in (streamed, in_memory):
        assert isinstance(splits, JetSplits)
        loader = splits.loader("val", batch_size=8)
        assert isinstance(loader, JetLoader)
        assert loader.class_names == splits.class_names and loader.scalar_names == splits.scalar_names
        assert all(isinstance(b, JetBatch) for b in loader)
        assert len(splits.arrays("val", max_jets=5)) == 5
        assert splits.metrics()["data_n_val"] > 0
    assert isinstance(StreamingJetLoader(plan, "train"), JetLoader)
    assert isinstance(InMemoryLoader(all_jets, batch_size=8), JetLoader)
    assert not isinstance(object(), JetLoader) and not isinstance(all_jets, JetSplits)


@pytest.mark.parametrize("batch_size, message", [(15, "divisible by the 2 DDP processes"),
                                                 (0, "positive integer")])
def test_both_loaders_reject_a_bad_batch_size_with_one_error(plan, all_jets, batch_size, message):
    with pytest.raises(DataError, match=message):
        StreamingJetLoader(plan, "train", batch_size=batch_size, rank=0, world_size=2)
    with pytest.raises(DataError, match=message):
        InMemoryLoader(all_jets, batch_size=batch_size, rank=0, world_size=2)
