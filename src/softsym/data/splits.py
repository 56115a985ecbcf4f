"""The train/val/test splits: what both forms provide (``JetSplits``), in memory (``DatasetSplits``, from
``load_splits``: read, split stratified and seeded, summarise) or streamed from the files
(``StreamingSplits``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from softsym.data.checks import DEFAULT_TOLERANCE
from softsym.data.jets import JetArrays
from softsym.data.loaders import InMemoryLoader, JetLoader
from softsym.data.reader import ReadSummary, read_jets
from softsym.data.stratify import split_indices, stratified_subsample
from softsym.data.stream_plan import StreamPlan
from softsym.data.streaming import StreamingJetLoader

# Random streams of the seeded, stratified subsamples (beside the split's own permutation).
TRAIN_LIMIT_STREAM = 1  # data.max_train_jets
SAMPLE_STREAM = 2       # arrays(split, max_jets): a fixed evaluation sample


@runtime_checkable
class JetSplits(Protocol):
    """Train/val/test jets, whether held in memory or streamed: what the stages use."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def scalar_names(self) -> tuple[str, ...]: ...

    def loader(self, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0, device="cpu",
               rank: int = 0, world_size: int = 1) -> JetLoader:
        """Batches of one split (``train``, ``val``, ``test``)."""
        ...

    def arrays(self, split: str, max_jets: int | None = None) -> JetArrays:
        """One split in memory (``max_jets`` of its jets if given)."""
        ...

    def metrics(self) -> dict[str, float]:
        """The data metrics: ``data_n_<split>``, ``data_signal_frac`` (overall and per split), ..."""
        ...


@dataclass(frozen=True)
class DatasetSplits:
    train: JetArrays
    val: JetArrays
    test: JetArrays
    summary: ReadSummary
    n_train_available: int | None = None  # train jets before data.max_train_jets (None: no limit)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return self.train.scalar_names

    def loader(self, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0, device="cpu",
               rank: int = 0, world_size: int = 1) -> InMemoryLoader:
        """Batches of one split (``train``, ``val``, ``test``); the streaming dataset offers the same call."""
        return InMemoryLoader(self.arrays(split), batch_size=batch_size, shuffle=shuffle, seed=seed, device=device,
                              rank=rank, world_size=world_size)

    def arrays(self, split: str, max_jets: int | None = None) -> JetArrays:
        """One split in memory; with ``max_jets``, a seeded sample of it in the class proportions (the same
        jets in every call; files are read class by class, so the first jets would be one class)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; expected train, val or test")
        arrays = getattr(self, split)
        if max_jets is None or max_jets >= len(arrays):
            return arrays
        return arrays.subset(stratified_subsample(arrays.labels, max_jets, seed=0, stream=SAMPLE_STREAM))

    def metrics(self) -> dict[str, float]:
        """The data metrics (jets per split, signal fractions, mean particles, dropped jets), plus the signal
        fraction of each split."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        n_total = sum(len(p) for p in parts.values())
        signal = sum(int((p.labels != 0).sum()) for p in parts.values())
        out = {f"data_n_{name}": float(len(p)) for name, p in parts.items()}
        out["data_signal_frac"] = signal / max(n_total, 1)
        out.update({f"data_signal_frac_{name}": float((p.labels != 0).mean()) for name, p in parts.items()})
        out["data_mean_particles"] = float(np.mean([p.mask.sum(1).mean() for p in parts.values()]))
        out["data_dropped_jets"] = float(self.summary.n_dropped_empty)
        out.update(self.summary.check_metrics())  # truncated jets, unphysical particles
        if self.n_train_available is not None:
            out["data_n_train_available"] = float(self.n_train_available)
        return out


def load_splits(paths: Sequence[str], *, tree: str = "tree", branches: Mapping[str, str] | None = None,
                classes: Sequence[str] = ("QCD", "Tbqq"), max_particles: int = 128,
                max_jets_per_class: int | None = None, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                seed: int = 0, max_train_jets: int | None = None, progress: bool = False,
                observers: Sequence[str] = (), unphysical: str = "error",
                unphysical_tolerance: float = DEFAULT_TOLERANCE) -> DatasetSplits:
    """Read every selected jet into memory and split it deterministically by ``seed``, stratified by class.

    ``max_train_jets`` keeps a seeded, stratified subsample of the training split only (nested across sizes);
    validation and test are the same jets whatever the limit, so runs of different training sizes share them.
    ``observers``: per-jet columns carried beside the jets (``softsym.data.observers``). ``unphysical``,
    ``unphysical_tolerance``: what to do with unphysical particles (``softsym.data.checks``).
    """
    arrays, summary = read_jets(list(paths), tree=tree, branches=dict(branches) if branches else None,
                                classes=tuple(classes), max_particles=max_particles,
                                max_jets_per_class=max_jets_per_class, progress=progress, observers=observers,
                                unphysical=unphysical, unphysical_tolerance=unphysical_tolerance)
    train, val, test = split_indices(arrays.labels, fractions=tuple(fractions), seed=seed)
    n_available = None
    if max_train_jets is not None:
        n_available = len(train)
        train = train[stratified_subsample(arrays.labels[train], max_train_jets, seed=seed,
                                           stream=TRAIN_LIMIT_STREAM)]
    return DatasetSplits(arrays.subset(train), arrays.subset(val), arrays.subset(test), summary, n_available)


@dataclass(frozen=True)
class StreamingSplits:
    """Train/val/test streamed from the files (``data.stream``): the interface of ``DatasetSplits``."""

    plan: StreamPlan
    loader_workers: int = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.plan.classes

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return self.plan.scalar_names

    def loader(self, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0, device="cpu",
               rank: int = 0, world_size: int = 1) -> StreamingJetLoader:
        """``seed`` is the plan's (the split and shuffle seed are fixed when the plan is made); under DDP each
        rank streams its own share of the files (``StreamingJetLoader``)."""
        return StreamingJetLoader(self.plan, split, batch_size=batch_size, shuffle=shuffle, device=device,
                                  loader_workers=self.loader_workers, rank=rank, world_size=world_size)

    def arrays(self, split: str, max_jets: int | None = None) -> JetArrays:
        """The first ``max_jets`` jets of a split (file order) in memory, e.g. a fixed evaluation set."""
        parts, n = [], 0
        for batch in StreamingJetLoader(self.plan, split, batch_size=4096, shuffle=False):
            parts.append(JetArrays(batch.p4.numpy(), batch.mask.numpy(), batch.labels.numpy(), batch.scalars.numpy(),
                                   self.class_names, self.scalar_names))
            n += len(batch)
            if max_jets is not None and n >= max_jets:
                break
        arrays = JetArrays.concatenate(parts)
        return arrays if max_jets is None else arrays.subset(slice(0, max_jets))

    def metrics(self) -> dict[str, float]:
        counts = {split: self.plan.n_jets_per_class(split) for split in ("train", "val", "test")}
        out = {f"data_n_{split}": float(sum(c.values())) for split, c in counts.items()}
        background = self.class_names[0]
        total = sum(out.values())
        out["data_signal_frac"] = sum(sum(c.values()) - c[background] for c in counts.values()) / max(total, 1)
        for split, c in counts.items():
            out[f"data_signal_frac_{split}"] = (sum(c.values()) - c[background]) / max(sum(c.values()), 1)
        out["data_streamed"] = 1.0
        out.update(self.plan.check_metrics())  # truncated jets, unphysical particles, dropped jets
        return out
