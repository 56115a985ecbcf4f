"""From files to train/val/test ``JetArrays``: read, split (stratified, seeded), summarise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from softsym.data.jets import JetArrays
from softsym.data.reader import ReadSummary, read_jets
from softsym.data.splits import split_indices


@dataclass(frozen=True)
class DatasetSplits:
    train: JetArrays
    val: JetArrays
    test: JetArrays
    summary: ReadSummary

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return self.train.scalar_names

    def metrics(self) -> dict[str, float]:
        """The data metrics of DESIGN.md, plus the signal fraction of each split."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        n_total = sum(len(p) for p in parts.values())
        signal = sum(int((p.labels != 0).sum()) for p in parts.values())
        out = {f"data_n_{name}": float(len(p)) for name, p in parts.items()}
        out["data_signal_frac"] = signal / max(n_total, 1)
        out.update({f"data_signal_frac_{name}": float((p.labels != 0).mean()) for name, p in parts.items()})
        out["data_mean_particles"] = float(np.mean([p.mask.sum(1).mean() for p in parts.values()]))
        out["data_dropped_jets"] = float(self.summary.n_dropped_empty)
        return out


def load_splits(paths: Sequence[str], *, tree: str = "tree", branches: Mapping[str, str] | None = None,
                classes: Sequence[str] = ("QCD", "Tbqq"), max_particles: int = 128,
                max_jets_per_class: int | None = None, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                seed: int = 0, progress: bool = False) -> DatasetSplits:
    """Read every selected jet into memory and split it deterministically by ``seed``, stratified by class."""
    arrays, summary = read_jets(list(paths), tree=tree, branches=dict(branches) if branches else None,
                                classes=tuple(classes), max_particles=max_particles,
                                max_jets_per_class=max_jets_per_class, progress=progress)
    train, val, test = split_indices(arrays.labels, fractions=tuple(fractions), seed=seed)
    return DatasetSplits(arrays.subset(train), arrays.subset(val), arrays.subset(test), summary)
