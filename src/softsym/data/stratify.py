"""Deterministic, stratified train/val/test splits.

Two forms with the same guarantee (each split holds every class in its proportion, whatever the file order):
- ``split_indices`` for jets in memory: a seeded permutation inside each class, cut at the fractions.
- ``stratified_subsample`` for a seeded subset of a split in the class proportions (a training-size limit,
  an evaluation sample, a distillation transfer set): nested, so a smaller size is a subset of a larger one.
- ``entry_hashes`` + ``split_bounds`` for streaming, where the jets are never all loaded: every (file, entry)
  gets a seeded 63-bit hash, and each class of each file is cut at the hash quantiles of the fractions, so a
  jet's split is decided from its own hash and a few numbers per file.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence

import numpy as np

from softsym.data.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
_HASH_MAX = np.uint64(1 << 63)  # hashes are 63-bit, so this bound is above all of them


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative fractions (train, val, test) that add up to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not math.isfinite(f) or f < 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise DataError(f"data.splits must be three non-negative fractions (train, val, test) adding up to 1, "
                        f"got {list(fractions)}")
    return values


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """How many of ``n`` go to train and to val (test takes the rest), rounded to nearest."""
    n_train = min(n, round(fractions[0] * n))
    n_val = min(n - n_train, round(fractions[1] * n))
    return n_train, n_val


def split_indices(labels: np.ndarray, *, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test jets, each sorted, stratified by class and fixed by ``seed``."""
    fractions = check_fractions(fractions)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_train, n_val = _split_counts(len(members), fractions)
        for part, piece in zip(parts, np.split(members, [n_train, n_train + n_val]), strict=True):
            part.append(piece)
    return tuple(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)


def stratified_subsample(labels: np.ndarray, n: int | None, *, seed: int, stream: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` jets of ``labels`` in the class proportions, fixed by (``seed``, ``stream``).

    Each class is put in a seeded random order and its k-th member gets the key (k + 1/2) / n_class; the ``n``
    smallest keys are kept. So every class gets its proportional share to within one jet, and the subsample
    of a smaller ``n`` is contained in that of a larger one (learning curves compare nested training sets).
    ``n`` None or >= the number of jets: all of them.
    """
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 0:
        raise DataError(f"a subsample size must be >= 0, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))
    keys = np.empty(len(labels))
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((labels, keys))  # by key, ties by class
    return np.sort(order[:n])


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64 that spreads every input bit over the output."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def file_key(path: str) -> int:
    """A 64-bit key from the file's name (not its directory), so splits survive moving the files."""
    return int.from_bytes(hashlib.blake2b(os.path.basename(path).encode(), digest_size=8).digest(), "little")


def entry_hashes(seed: int, key: int, entries: np.ndarray) -> np.ndarray:
    """Seeded 63-bit hashes of entry numbers within the file with ``key``."""
    with np.errstate(over="ignore"):
        base = _mix64(np.array([(seed * 0x9E3779B97F4A7C15 + key) % (1 << 64)], np.uint64))
        return _mix64(np.asarray(entries, np.uint64) + base) >> np.uint64(1)


def split_bounds(hashes: np.ndarray, fractions: Sequence[float]) -> tuple[int, int]:
    """Hash cuts (b1, b2) of one class of one file: train is h < b1, val b1 <= h < b2, test h >= b2."""
    fractions = check_fractions(fractions)
    ordered = np.sort(hashes)
    n_train, n_val = _split_counts(len(ordered), fractions)

    def cut(k: int) -> int:
        return int(ordered[k]) if k < len(ordered) else int(_HASH_MAX)
    return cut(n_train), cut(n_train + n_val)


def split_of(hashes: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of each hash, given per-row bounds."""
    return (hashes >= b1).astype(np.int8) + (hashes >= b2).astype(np.int8)


# ---------------------------------------------------------------- evaluation samples of a split
def allocate(counts: Sequence[int], n: int) -> np.ndarray:
    """Jets to draw from each class: ``n`` shared in proportion to ``counts`` (largest remainder), every
    non-empty class at least one when ``n`` allows; all of them when ``n`` >= the total."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if n >= total:
        return counts.copy()
    quota = n * counts / max(total, 1)
    take = np.floor(quota).astype(np.int64)
    for i in np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]:
        take[i] += 1
    present = np.flatnonzero(counts > 0)
    if n >= len(present):
        for i in present[take[present] == 0]:  # a small class rounded to zero: take one from the largest share
            take[int(np.argmax(take))] -= 1
            take[i] = 1
    return np.minimum(take, counts)


def jet_keys(p4: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 63-bit key per jet from its 4-vectors' bytes: the same jet gets the same key wherever it sits
    in a file or a stream, so a sample chosen by key does not depend on reading order."""
    words = np.ascontiguousarray(p4, dtype=np.float32).reshape(len(p4), -1).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(len(p4), (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64), np.uint64)
        for j in range(words.shape[1]):
            h = _mix64(h ^ (words[:, j] + np.uint64(j)))
    return h >> np.uint64(1)


def sample_split(dataset, split: str, n: int | None, seed: int, *, batch_size: int = 4096):
    """A seeded, class-stratified sample of ``n`` jets of one split of a ``JetSplits`` (in memory or streamed),
    as ``JetArrays``; the whole split when ``n`` is None or not smaller. One pass over the split keeps, per
    class, the ``n`` jets of smallest ``jet_keys``; the final share of each class follows its count in the
    split. The jets are chosen by content, so the sample is the same whatever the file or stream order (and
    the same for every run with this seed on these data), and it is returned in key order."""
    from softsym.data.jets import JetArrays

    pool: JetArrays | None = None
    pool_keys = np.zeros(0, np.uint64)
    counts: dict[int, int] = {}
    for batch in dataset.loader(split, batch_size=batch_size):
        part = JetArrays(batch.p4.cpu().numpy(), batch.mask.cpu().numpy(), batch.labels.cpu().numpy(),
                         batch.scalars.cpu().numpy(), dataset.class_names, dataset.scalar_names)
        for c, k in zip(*np.unique(part.labels, return_counts=True), strict=True):
            counts[int(c)] = counts.get(int(c), 0) + int(k)
        keys = jet_keys(part.p4, seed)
        if pool is not None:
            part, keys = JetArrays.concatenate([pool, part]), np.concatenate([pool_keys, keys])
        if n is not None:  # keep the n smallest keys of each class: a superset of the final sample
            keep = np.concatenate([np.flatnonzero(part.labels == c)[np.argsort(keys[part.labels == c],
                                                                              kind="stable")[:n]]
                                   for c in np.unique(part.labels)])
            part, keys = part.subset(keep), keys[keep]
        pool, pool_keys = part, keys
    if pool is None:
        raise ValueError(f"the {split} split is empty: no jets to sample")
    if n is None or n >= sum(counts.values()):
        return pool.subset(np.argsort(pool_keys, kind="stable"))
    classes = sorted(counts)
    take = dict(zip(classes, allocate([counts[c] for c in classes], n), strict=True))
    chosen = np.concatenate([np.flatnonzero(pool.labels == c)[np.argsort(pool_keys[pool.labels == c],
                                                                          kind="stable")[:take[c]]]
                             for c in classes])
    return pool.subset(chosen[np.argsort(pool_keys[chosen], kind="stable")])
