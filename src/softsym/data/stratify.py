"""Deterministic, stratified train/val/test splits.

Two forms with the same guarantee (each split holds every class in its proportion, whatever the file order):
- ``split_indices`` for jets in memory: a seeded permutation inside each class, cut at the fractions.
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
