"""The plan of a streamed read: which files, which chunks, and which split every jet belongs to.

``plan_stream`` runs the reader's label pass once (a few bytes per jet, one file at a time) and fixes which
split every jet belongs to: each (file, entry) has a seeded hash, and each class of each file is cut at the
hash quantiles of the split fractions, so the splits are deterministic and stratified per file and class
without holding any jet (``stratify``). The streaming loader (``softsym.data.streaming``) reads by this plan.
While each file is open for its labels, its 4-vectors are read once more, chunk by chunk, for the particle
checks (``checks``): unphysical particles are refused here, before any training, and the truncated jets,
unphysical particles and empty jets of the whole selection are counted, as the in-memory reader counts them.

``should_stream`` decides between streaming and the in-memory path from the entry counts and a memory budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from softsym.data.checks import DEFAULT_TOLERANCE, DataCounts, ParticleCheck
from softsym.data.errors import DataError
from softsym.data.files import JetSource, SourceCache, expand_paths
from softsym.data.reader import FilePlan, ReadPlan, chunk_counts, plan_files, read_chunk
from softsym.data.schema import DEFAULT_SCALARS
from softsym.data.stratify import SPLIT_NAMES, check_fractions, entry_hashes, file_key, split_bounds, split_of

STREAM_CHUNK_ENTRIES = 8_192

__all__ = ["StreamFile", "StreamPlan", "estimate_memory_gb", "plan_stream", "should_stream"]


@dataclass(frozen=True)
class StreamFile:
    plan: FilePlan
    key: int                 # file_key(path): the hash salt of this file's entries
    bounds: np.ndarray       # [n_classes, 2] uint64 hash cuts train|val and val|test
    n_per_split: np.ndarray  # [3, n_classes] jets of each class in each split


@dataclass(frozen=True)
class StreamPlan:
    """Everything a streaming epoch needs to know about the files, a few numbers per file."""

    files: tuple[StreamFile, ...]
    tree: str
    classes: tuple[str, ...]
    scalar_names: tuple[str, ...]
    max_particles: int
    seed: int
    files_skipped: tuple[str, ...]
    n_unselected: int
    check: ParticleCheck = ParticleCheck()  # what to do with unphysical particles as they are read
    counts: DataCounts = DataCounts()       # what the checks found in the whole selection

    def check_metrics(self) -> dict[str, float]:
        """``data_truncated_jets``, ``data_truncated_particles_mean``, ``data_unphysical_particles``, ..."""
        return self.counts.metrics()

    def n_jets_per_class(self, split: str) -> dict[str, int]:
        """Jets with a selected label in ``split`` (jets without constituents are dropped as they are met)."""
        index = SPLIT_NAMES.index(split)
        totals = sum((f.n_per_split[index] for f in self.files), np.zeros(len(self.classes), np.int64))
        return {cls: int(n) for cls, n in zip(self.classes, totals, strict=True)}

    def n_jets(self, split: str) -> int:
        return sum(self.n_jets_per_class(split).values())


def plan_stream(paths: str | Iterable[str], *, tree: str = "tree", branches: Mapping[str, str] | None = None,
                classes: Sequence[str] = ("QCD", "Tbqq"), max_particles: int = 128,
                max_jets_per_class: int | None = None, scalar_branches: Sequence[str] = DEFAULT_SCALARS,
                fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                chunk_entries: int = STREAM_CHUNK_ENTRIES, progress: bool = False, unphysical: str = "error",
                unphysical_tolerance: float = DEFAULT_TOLERANCE) -> StreamPlan:
    """Check every file and fix the split of every jet from the labels; check and count the particles."""
    if max_particles < 1:
        raise DataError(f"data.max_particles must be a positive integer, got {max_particles}")
    fractions = check_fractions(fractions)
    check = ParticleCheck(unphysical, unphysical_tolerance)
    extras: list[tuple[int, np.ndarray, np.ndarray]] = []
    totals = [DataCounts()]

    def cut_splits(_: int, file_plan: FilePlan, class_index: np.ndarray, source: JetSource) -> None:
        key = file_key(file_plan.path)
        bounds = np.zeros((len(file_plan.n_per_class), 2), np.uint64)
        counts = np.zeros((3, len(file_plan.n_per_class)), np.int64)
        for k in range(len(file_plan.n_per_class)):
            hashes = entry_hashes(seed, key, np.flatnonzero(class_index == k))
            bounds[k] = split_bounds(hashes, fractions)
            counts[:, k] = np.bincount(split_of(hashes, bounds[k, 0], bounds[k, 1]), minlength=3)
        extras.append((key, bounds, counts))
        for start, stop in file_plan.chunks:
            if start >= file_plan.entry_stop:
                break
            stop = min(stop, file_plan.entry_stop)
            chunk = read_chunk(source, file_plan, classes, (), start, stop, class_index=class_index[start:stop],
                               check=check)
            totals[0] += chunk_counts(chunk, max_particles)

    read_plan: ReadPlan = plan_files(paths, tree=tree, branches=branches, classes=classes,
                                     max_jets_per_class=max_jets_per_class, scalar_branches=scalar_branches,
                                     chunk_entries=chunk_entries, on_labels=cut_splits, progress=progress)
    files = tuple(StreamFile(p, *extra) for p, extra in zip(read_plan.files, extras, strict=True))
    return StreamPlan(files, tree, read_plan.classes, read_plan.scalar_names, max_particles, seed,
                      read_plan.files_skipped, read_plan.n_unselected, check, totals[0])


def estimate_memory_gb(paths: str | Iterable[str], *, tree: str = "tree", max_particles: int = 128,
                       n_classes: int = 2, max_jets_per_class: int | None = None,
                       n_scalars: int = len(DEFAULT_SCALARS)) -> float:
    """Memory the in-memory path would take, from entry counts only (no data is read).

    Per jet: p4 (4 float32), mask (1 byte) and scalars (float32 each) per particle slot, and the label; times
    2 because the train/val/test subsets are copies of the arrays read. Files may hold classes that are not
    selected, so this is an upper bound.
    """
    n_entries = 0
    with SourceCache(tree, capacity=0) as sources:
        for path in expand_paths(paths):
            source = sources.get(path)
            n_entries += source.num_entries
            sources.release(source)
    if max_jets_per_class is not None:
        n_entries = min(n_entries, max_jets_per_class * n_classes)
    bytes_per_jet = max_particles * (4 * 4 + 1 + 4 * n_scalars) + 8
    return 2 * n_entries * bytes_per_jet / 1024**3


def should_stream(paths: str | Iterable[str], *, stream: bool | str = "auto", memory_budget_gb: float = 4.0,
                  tree: str = "tree", max_particles: int = 128, n_classes: int = 2,
                  max_jets_per_class: int | None = None, n_scalars: int = len(DEFAULT_SCALARS)) -> bool:
    """``data.stream``: True/False force it; "auto" streams when the estimate exceeds ``memory_budget_gb``."""
    choice = str(stream).lower()
    if choice in ("true", "false"):
        return choice == "true"
    if choice != "auto":
        raise DataError(f"data.stream must be auto, true or false, got {stream!r}")
    estimate = estimate_memory_gb(paths, tree=tree, max_particles=max_particles, n_classes=n_classes,
                                  max_jets_per_class=max_jets_per_class, n_scalars=n_scalars)
    return estimate > memory_budget_gb
