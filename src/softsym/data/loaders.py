"""Loaders: what every loader of batches of jets provides (``JetLoader``), and the in-memory one.

``InMemoryLoader`` is the fast default when the selection fits in memory; its batch order depends only on
(seed, epoch), so a resumed training sees exactly the batches the uninterrupted one would have seen. The
streaming loader (``softsym.data.streaming.StreamingJetLoader``) provides the same interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from softsym.data.errors import DataError
from softsym.data.jets import JetArrays, JetBatch


@runtime_checkable
class JetLoader(Protocol):
    """Batches of one split: iterate for ``JetBatch`` objects on the loader's device.

    ``set_epoch`` reseeds the shuffle (call it before each epoch), ``n_jets`` counts the split's jets (all
    ranks together), ``class_names`` / ``scalar_names`` name the label indices and the scalar features.
    """

    @property
    def n_jets(self) -> int: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def scalar_names(self) -> tuple[str, ...]: ...

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[JetBatch]: ...


def check_batch_size(batch_size: int, world_size: int) -> None:
    """A global batch of ``batch_size`` jets must split evenly over the ``world_size`` DDP processes."""
    if batch_size < 1:
        raise DataError(f"train.batch_size must be a positive integer, got {batch_size}")
    if batch_size % world_size:
        raise DataError(f"train.batch_size={batch_size} must be divisible by the {world_size} DDP processes")


class InMemoryLoader:
    """Batches of ``batch_size`` jets; with ``world_size > 1`` (DDP) each rank gets its share of every global
    batch (``rank::world_size``), so the ranks together see exactly the single-process batches."""

    def __init__(self, arrays: JetArrays, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> None:
        check_batch_size(batch_size, world_size)
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.class_names = arrays.class_names
        self.scalar_names = arrays.scalar_names
        self._all = arrays.to_batch(device)

    @property
    def n_jets(self) -> int:
        return len(self._all)

    def __len__(self) -> int:
        return -(-self.n_jets // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[JetBatch]:
        if self.shuffle:
            rng = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n_jets, generator=rng).to(self._all.p4.device)
        else:
            order = torch.arange(self.n_jets, device=self._all.p4.device)
        for start in range(0, self.n_jets, self.batch_size):
            idx = order[start:start + self.batch_size][self.rank::self.world_size]
            yield JetBatch(self._all.p4[idx], self._all.mask[idx], self._all.labels[idx], self._all.scalars[idx])
