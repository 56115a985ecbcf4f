"""In-memory batching: the fast default when the selection fits in memory.

Batch order depends only on (seed, epoch), so a resumed training sees exactly the batches the
uninterrupted one would have seen. The streaming loader (``softsym.data.streaming``) has the same interface:
iterate for ``JetBatch`` objects, ``set_epoch``, ``n_jets``, ``class_names``, ``scalar_names``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from softsym.data.jets import JetArrays, JetBatch


class InMemoryLoader:
    """Batches of ``batch_size`` jets; with ``world_size > 1`` (DDP) each rank gets its share of every global
    batch (``rank::world_size``), so the ranks together see exactly the single-process batches."""

    def __init__(self, arrays: JetArrays, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"train.batch_size={batch_size} must be divisible by the {world_size} DDP processes")
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
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n_jets, generator=g).to(self._all.p4.device)
        else:
            order = torch.arange(self.n_jets, device=self._all.p4.device)
        for start in range(0, self.n_jets, self.batch_size):
            idx = order[start:start + self.batch_size][self.rank::self.world_size]
            yield JetBatch(self._all.p4[idx], self._all.mask[idx], self._all.labels[idx], self._all.scalars[idx])
