"""Streaming jets from files bigger than memory: a torch ``IterableDataset`` over file chunks.

``StreamingJetLoader`` reads by a ``StreamPlan`` (``softsym.data.stream_plan``: the files, their chunks and
every jet's split, fixed from the labels alone) and yields ``JetBatch`` objects like the in-memory loader:

- every epoch the files come in a seeded order and are read a few at a time, one chunk of each in turn;
  with ``loader_workers`` DataLoader workers, whole files (or, with few files, chunks) are dealt out to them;
- each worker keeps a shuffle buffer of about ``shuffle_buffer`` padded jets: slots holding chunks from
  different files, from which every batch draws at random, so a batch mixes files and classes even though
  JetClass holds one process per file;
- every jet of the split is yielded exactly once per epoch (jets without constituents are dropped), and
  memory is the buffer plus one chunk per worker, whatever the number of files;
- under DDP (``rank``, ``world_size``) the files or chunks are dealt over every worker of every rank, so each
  rank reads its own share of the data; ranks may then run a few more or fewer steps than each other, which
  the training loop absorbs with DDP's ``join``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from softsym.data.errors import DataError
from softsym.data.files import JetSource, open_source
from softsym.data.jets import JetBatch
from softsym.data.loaders import check_batch_size
from softsym.data.padding import Chunk, clear_slots, pad_chunk
from softsym.data.reader import read_chunk
from softsym.data.stratify import SPLIT_NAMES, entry_hashes, split_of
from softsym.data.stream_plan import StreamFile, StreamPlan

_PREFETCH = 2  # batches each DataLoader worker prepares ahead
_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.bool_): torch.bool,
                 np.dtype(np.int64): torch.int64}

__all__ = ["JetStream", "StreamingJetLoader"]


def _worker_units(plan: StreamPlan, epoch: int, shuffle: bool, n_lanes: int, worker: int,
                  n_workers: int) -> list[tuple[int, int, int]]:
    """This worker's (file index, start, stop) chunks for one epoch, in reading order.

    Files come in a seeded order and are read ``n_lanes`` at a time, one chunk of each in turn. With enough
    files each worker takes whole files (one opening per file); with fewer, chunk c of a file goes to worker
    (c + d) mod W, d being the file's place in the deal, so that every worker still mixes files.
    """
    order = (np.random.default_rng([plan.seed, epoch]).permutation(len(plan.files)) if shuffle
             else np.arange(len(plan.files)))
    whole_files = len(plan.files) >= n_workers * n_lanes
    # deal the files out class by class, so that every worker gets a like mix of classes (and of work:
    # jets of different processes differ in size)
    main_class = [int(np.argmax(plan.files[i].n_per_split.sum(0))) for i in order]
    dealt = np.empty(len(order), np.int64)
    dealt[np.argsort(main_class, kind="stable")] = np.arange(len(order))
    queues = []
    for rank, i in enumerate(order.tolist()):
        file_plan = plan.files[i].plan
        chunks = [(start, min(stop, file_plan.entry_stop)) for start, stop in file_plan.chunks
                  if start < file_plan.entry_stop]
        queues.append([(i, start, stop) for c, (start, stop) in enumerate(chunks)
                       if ((0 if whole_files else c) + int(dealt[rank])) % n_workers == worker])
    lanes: list[list[tuple[int, int, int]]] = []
    sequence: list[tuple[int, int, int]] = []
    pending = iter(queues)
    while True:  # round-robin over n_lanes files at a time; a finished file gives its lane to the next one
        lanes = [lane for lane in lanes if lane]
        while len(lanes) < n_lanes and (queue := next(pending, None)) is not None:
            if queue:
                lanes.append(queue[::-1])
        if not lanes:
            return sequence
        sequence.extend(lane.pop() for lane in lanes)


class _Slot:
    """One chunk, padded, handed out in a random order; its arrays are reused for the next chunk."""

    def __init__(self, rows: int, max_particles: int, n_scalars: int) -> None:
        self.p4 = np.zeros((rows, max_particles, 4), np.float32)
        self.mask = np.zeros((rows, max_particles), bool)
        self.scalars = np.zeros((rows, max_particles, n_scalars), np.float32)
        self.labels = np.zeros(rows, np.int64)
        self.order = np.zeros(0, np.int64)
        self.used = self.size = 0

    @property
    def remaining(self) -> int:
        return self.size - self.used

    def load(self, chunk: Chunk, rng: np.random.Generator | None) -> None:
        n = len(chunk.rows)
        before = self.mask[:n].copy()  # what the previous chunks left in these rows
        pad_chunk(chunk, self.p4[:n], self.mask[:n], self.scalars[:n])
        # pad_chunk writes only real particles: clear the slots that held one and now pad (cheaper than
        # clearing the whole ~5 kB of every row)
        stale = before & ~self.mask[:n]
        clear_slots(self.p4[:n], stale)
        clear_slots(self.scalars[:n], stale)
        self.labels[:n] = chunk.labels
        self.order = rng.permutation(n) if rng is not None else np.arange(n)
        self.used, self.size = 0, n

    def take_into(self, n: int, batch: tuple[np.ndarray, ...], first: int) -> None:
        """Copy the next ``n`` jets of this slot into rows [first, first + n) of the batch arrays."""
        index = self.order[self.used:self.used + n]
        self.used += n
        for source, target in zip((self.p4, self.mask, self.labels, self.scalars), batch, strict=True):
            np.take(source, index, axis=0, out=target[first:first + n], mode="clip")  # "raise" would buffer


def _release_slot(flags: np.ndarray, worker: int, slot: int) -> None:
    flags[worker, slot] = 0


class _SharedBatches:
    """Batch buffers in shared memory, reused, through which DataLoader workers hand batches over.

    A batch of padded jets is ~5 kB per jet. The DataLoader would move every batch a worker makes into new
    shared memory, mapped anew on both sides; on a 2-core machine that made one worker several times slower
    than none. Here each worker owns ``n_slots`` buffers made before the workers start: it fills a free one
    and sends only (worker, slot, size). The main process wraps the slot in tensors without copying
    (``torch.frombuffer``, which keeps the slot's array alive as long as any tensor or view of it is), and
    the slot is marked free when that array is collected. A worker that finds no free slot (the consumer
    holds on to many batches) sends its batch the DataLoader's ordinary way instead.
    """

    def __init__(self, n_workers: int, n_slots: int, batch_size: int, max_particles: int, n_scalars: int) -> None:
        self.shapes = ((max_particles, 4), (max_particles,), (), (max_particles, n_scalars))
        self.dtypes = (np.dtype(np.float32), np.dtype(np.bool_), np.dtype(np.int64), np.dtype(np.float32))
        self.row_bytes = [int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                          for shape, dtype in zip(self.shapes, self.dtypes, strict=True)]
        region_bytes = [-(-batch_size * size // 8) * 8 for size in self.row_bytes]  # 8-byte aligned
        self.starts = np.concatenate([[0], np.cumsum(region_bytes)[:-1]]).tolist()
        # torch tensors, not numpy arrays: they pickle as handles to the same memory if workers are spawned
        self.memory = torch.empty((n_workers, n_slots, sum(region_bytes)), dtype=torch.uint8).share_memory_()
        self.flags = torch.zeros((n_workers, n_slots), dtype=torch.int8).share_memory_()  # 1: in use

    def _regions(self, n: int):
        """(start, stop, shape, dtype) of each array of an n-row batch inside a slot."""
        return [(start, start + n * size, (n, *shape), dtype) for start, size, shape, dtype
                in zip(self.starts, self.row_bytes, self.shapes, self.dtypes, strict=True)]

    def acquire(self, worker: int) -> int | None:
        """A free slot of ``worker``, marked in use; None when all are held. Called in the worker."""
        flags = self.flags.numpy()
        free = np.flatnonzero(flags[worker] == 0)
        if not len(free):
            return None
        flags[worker, free[0]] = 1
        return int(free[0])

    def views(self, worker: int, slot: int, n: int) -> tuple[np.ndarray, ...]:
        """numpy views of a slot's first ``n`` rows, for the worker to fill."""
        memory = self.memory[worker, slot].numpy()
        return tuple(memory[a:b].view(dtype).reshape(shape) for a, b, shape, dtype in self._regions(n))

    def batch(self, worker: int, slot: int, n: int) -> JetBatch:
        """The filled slot as a JetBatch, in the main process; the slot frees itself when no tensor uses it."""
        owner = self.memory[worker, slot].numpy()
        weakref.finalize(owner, _release_slot, self.flags.numpy(), worker, slot)
        memory = torch.frombuffer(owner, dtype=torch.uint8)
        return JetBatch(*(memory[a:b].view(_TORCH_DTYPES[dtype]).view(shape)
                          for a, b, shape, dtype in self._regions(n)))


class JetStream(IterableDataset):
    """The jets of one split, read chunk by chunk in the current process or in a DataLoader worker.

    The shuffle buffer is ``n_slots`` padded chunks from different files. A batch takes a
    multivariate-hypergeometric share from each slot, jets at random inside it: the law of drawing the batch
    uniformly from all jets held, with each jet copied once, into its batch. An emptied slot takes the next
    chunk; the slots' arrays are allocated once.
    """

    def __init__(self, plan: StreamPlan, split: str, *, batch_size: int, shuffle: bool, shuffle_buffer: int,
                 drop_last: bool, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if split not in SPLIT_NAMES:
            raise DataError(f"unknown split '{split}'; expected one of {', '.join(SPLIT_NAMES)}")
        self.plan, self.split_index = plan, SPLIT_NAMES.index(split)
        self.rank, self.world_size = rank, world_size
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.shuffle_buffer = shuffle_buffer
        self.epoch = 0
        self.shared: _SharedBatches | None = None  # set by StreamingJetLoader around a multi-worker epoch

    def _keep(self, stream_file: StreamFile):
        def keep(entries: np.ndarray, class_index: np.ndarray) -> np.ndarray:
            bounds = stream_file.bounds[np.maximum(class_index, 0)]
            hashes = entry_hashes(self.plan.seed, stream_file.key, entries)
            return split_of(hashes, bounds[:, 0], bounds[:, 1]) == self.split_index
        return keep

    def _chunks(self, units: list[tuple[int, int, int]]) -> Iterator[Chunk]:
        remaining: dict[int, int] = {}
        for index, _, _ in units:
            remaining[index] = remaining.get(index, 0) + 1
        sources: dict[int, JetSource] = {}
        try:
            for index, start, stop in units:
                stream_file = self.plan.files[index]
                if index not in sources:
                    sources[index] = open_source(stream_file.plan.path, self.plan.tree)
                chunk = read_chunk(sources[index], stream_file.plan, self.plan.classes, self.plan.scalar_names,
                                   start, stop, keep=self._keep(stream_file), check=self.plan.check)
                remaining[index] -= 1
                if not remaining[index]:  # this worker needs the file no more: close it now
                    sources.pop(index).close()
                if len(chunk.rows):
                    yield chunk
        finally:
            for source in sources.values():
                source.close()

    def _n_slots(self) -> int:
        if not self.shuffle:
            return 1
        chunk_sizes = [stop - start for f in self.plan.files for start, stop in f.plan.chunks]
        typical = int(np.median(chunk_sizes)) if chunk_sizes else 1
        return max(2, round(self.shuffle_buffer / max(typical, 1)))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        reader = self.rank * n_workers + worker  # this process's place among all readers of all ranks
        n_slots = self._n_slots()
        units = _worker_units(self.plan, self.epoch, self.shuffle, n_slots, reader, n_workers * self.world_size)
        if not units:
            return
        rng = np.random.default_rng([self.plan.seed, self.epoch, reader, 1]) if self.shuffle else None
        max_chunk = max(stop - start for _, start, stop in units)
        idle: list[_Slot] = []
        live: list[_Slot] = []
        chunks = self._chunks(units)
        while True:
            idle += [slot for slot in live if not slot.remaining]
            live = [slot for slot in live if slot.remaining]
            while len(live) < n_slots and (chunk := next(chunks, None)) is not None:
                if not idle:  # slots are made as chunks come: no more than the units need
                    idle.append(_Slot(max_chunk, self.plan.max_particles, len(self.plan.scalar_names)))
                slot = idle.pop()
                slot.load(chunk, rng)
                live.append(slot)
            held = np.array([slot.remaining for slot in live], np.int64)
            n = int(min(self.batch_size, held.sum()))
            if n == 0 or (n < self.batch_size and self.drop_last):
                return
            if rng is None:  # in file order: from the oldest slot on
                shares = np.clip(n - (np.cumsum(held) - held), 0, held)
            else:
                shares = rng.multivariate_hypergeometric(held, n)
            shared = self.shared if info is not None else None
            buffer = shared.acquire(worker) if shared is not None else None
            if buffer is not None:
                batch = shared.views(worker, buffer, n)
            else:
                p, n_scalars = self.plan.max_particles, len(self.plan.scalar_names)
                batch = (np.empty((n, p, 4), np.float32), np.empty((n, p), bool), np.empty(n, np.int64),
                         np.empty((n, p, n_scalars), np.float32))
            first = 0
            for slot, share in zip(live, shares.tolist(), strict=True):
                if share:
                    slot.take_into(share, batch, first)
                    first += share
            if buffer is not None:
                yield worker, buffer, n
            else:
                yield tuple(torch.from_numpy(a) for a in batch)


class StreamingJetLoader:
    """Batches of one split streamed from the files: the interface of the in-memory loader.

    Iterating yields ``JetBatch`` objects on ``device``; ``set_epoch`` reseeds the file order and the shuffle
    (the train split is shuffled by default, val and test come in file order). With ``world_size > 1`` this
    rank streams its share of the split in batches of ``batch_size / world_size`` jets (the global batch is
    ``batch_size``, as for the in-memory loader). ``n_jets`` counts the split's
    jets with a selected label; the rare jets without constituents are dropped as they are read, so an epoch
    may yield slightly fewer. Memory: each of ``max(1, loader_workers)`` processes holds about
    ``shuffle_buffer`` padded jets (~5 kB each at 128 particles) plus one chunk being read.
    """

    def __init__(self, plan: StreamPlan, split: str = "train", *, batch_size: int = 256,
                 shuffle: bool | None = None, loader_workers: int = 0, shuffle_buffer: int = 32_768,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu") -> None:
        check_batch_size(batch_size, world_size)
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside the {world_size} DDP processes")
        if loader_workers < 0:
            raise DataError(f"data.loader_workers must be 0 or more, got {loader_workers}")
        self.plan, self.split, self.batch_size = plan, split, batch_size // world_size
        self.loader_workers, self.device = loader_workers, device
        self.dataset = JetStream(plan, split, batch_size=self.batch_size,
                                 shuffle=split == "train" if shuffle is None else shuffle,
                                 shuffle_buffer=shuffle_buffer, drop_last=drop_last, rank=rank,
                                 world_size=world_size)

    @property
    def n_jets(self) -> int:
        """Jets of the whole split (all ranks together)."""
        return self.plan.n_jets(self.split)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.plan.classes

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return self.plan.scalar_names

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = int(epoch)

    def __iter__(self) -> Iterator[JetBatch]:
        for batch in self._cpu_batches():
            yield batch.to(self.device)

    def _cpu_batches(self) -> Iterator[JetBatch]:
        if self.loader_workers == 0:
            for p4, mask, labels, scalars in self.dataset:
                yield JetBatch(p4, mask, labels, scalars)
            return
        # prefetch_factor batches per worker wait in the DataLoader, one is being filled, and the consumer
        # usually holds one or two
        shared = _SharedBatches(self.loader_workers, _PREFETCH + 4, self.batch_size, self.plan.max_particles,
                                len(self.plan.scalar_names))
        self.dataset.shared = shared
        try:
            # batch_size=None: the dataset yields whole batches; workers start anew each epoch, so that
            # they see the current epoch
            loader = DataLoader(self.dataset, batch_size=None, num_workers=self.loader_workers,
                                prefetch_factor=_PREFETCH, persistent_workers=False)
            for item in loader:
                if len(item) == 3:  # (worker, slot, size): a batch in shared memory
                    yield shared.batch(*item)
                else:
                    yield JetBatch(*item)
        finally:
            self.dataset.shared = None

