"""Read jets from ROOT (TTree, RNTuple) and Parquet files into padded, pT-sorted in-memory arrays.

Reading takes two passes. The *plan* pass (``plan_files``) reads only the label columns of each file (a few
bytes per jet): it checks the schema and that labels are one-hot, turns them into class indices, applies
``max_jets_per_class`` and skips files that hold no selected class, all before any particle data is
decompressed. The *fill* pass then reads the particle columns chunk by chunk (chunks follow clusters / row
groups, ``read_chunk``), reusing the plan's class indices, checks the particles (``checks``: unphysical
4-vectors are refused, dropped or kept) and pads each chunk into preallocated ``[N, P, 4]`` arrays
(``padding.pad_chunk``). The streaming loader (``softsym.data.streaming``) reuses the plan, ``read_chunk``
and ``pad_chunk``.

Every column may hold any numeric dtype a ROOT or Parquet file can (float32/64, signed and unsigned
integers, bool): particle columns are converted to float32, what the padded arrays hold, as they are read,
and labels are compared with 1 and 0 whatever their type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from softsym.data.checks import DEFAULT_TOLERANCE, DataCounts, ParticleCheck, check_particles, truncation
from softsym.data.errors import DataError
from softsym.data.files import JetSource, SourceCache, expand_paths
from softsym.data.jets import JetArrays
from softsym.data.observers import ObserverReader
from softsym.data.padding import Chunk, pad_chunk
from softsym.data.schema import DEFAULT_SCALARS, JETCLASS_CLASSES, Column, FileSchema, resolve_schema

__all__ = ["DEFAULT_SCALARS", "JETCLASS_CLASSES", "ReadSummary", "read_jets"]

CHUNK_ENTRIES = 20_000        # particle chunk: ~100 MB of padded arrays at 128 particles
LABEL_CHUNK_ENTRIES = 500_000  # labels are a few bytes per jet


@dataclass(frozen=True)
class ReadSummary:
    """What ``read_jets`` read: per-class counts and what it dropped or skipped."""

    files: tuple[str, ...]                  # files that gave jets, in reading order
    files_skipped: tuple[str, ...]          # files with no jet of a selected class, or not needed (caps reached)
    class_names: tuple[str, ...]
    n_jets: int                             # jets returned
    n_jets_per_class: dict[str, int] = field(default_factory=dict)
    n_dropped_empty: int = 0                # selected jets without constituents, dropped
    n_truncated: int = 0                    # jets with more than max_particles constituents (kept, truncated)
    n_unselected: int = 0                   # jets of classes not in ``classes``, skipped
    scalar_names: tuple[str, ...] = ()
    n_truncated_particles: int = 0          # particles the truncated jets lost
    n_unphysical: int = 0                   # unphysical particles met (removed with data.unphysical=drop)

    @property
    def counts(self) -> DataCounts:
        return DataCounts(self.n_truncated, self.n_truncated_particles, self.n_unphysical, self.n_dropped_empty)

    def check_metrics(self) -> dict[str, float]:
        """``data_truncated_jets``, ``data_truncated_particles_mean``, ``data_unphysical_particles``, ..."""
        return self.counts.metrics()


@dataclass(frozen=True)
class FilePlan:
    """One file's part in a read: its schema, chunks and which entries of each class are used."""

    path: str
    schema: FileSchema
    num_entries: int
    chunks: tuple[tuple[int, int], ...]
    class_stops: tuple[int, ...]   # per class: entries at or after this index are beyond max_jets_per_class
    n_per_class: tuple[int, ...]   # jets of each class used from this file

    @property
    def entry_stop(self) -> int:
        """No used jet lies at or after this entry."""
        return max(self.class_stops)


@dataclass(frozen=True)
class ReadPlan:
    files: tuple[FilePlan, ...]
    files_skipped: tuple[str, ...]
    classes: tuple[str, ...]
    scalar_names: tuple[str, ...]
    n_unselected: int

    @property
    def n_per_class(self) -> tuple[int, ...]:
        return tuple(int(sum(f.n_per_class[k] for f in self.files)) for k in range(len(self.classes)))


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    classes = tuple(str(c) for c in classes)
    if not classes:
        raise DataError("data.classes is empty; select at least one class, e.g. [QCD, Tbqq]")
    if len(set(classes)) != len(classes):
        raise DataError(f"data.classes {list(classes)} names a class twice")
    return classes


def _per_jet(column: Column, path: str, name: str) -> np.ndarray:
    if isinstance(column, tuple):
        raise DataError(f"{path}: {name} holds a list per jet; expected one number per jet (a label)")
    return column


def _per_particle(column: Column, path: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and float32 values (native byte order, whatever the file's dtype) of a per-particle column."""
    if not isinstance(column, tuple):
        raise DataError(f"{path}: {name} holds one number per jet; expected a list per jet (one per particle)")
    offsets, values = column
    if values.dtype.kind not in "biuf":
        raise DataError(f"{path}: {name} holds values of type {values.dtype}; expected numbers")
    return offsets, values.astype(np.float32, copy=False)


def label_classes(columns: Mapping[str, Column], labels: Mapping[str, str], classes: Sequence[str],
                  path: str) -> tuple[np.ndarray, np.ndarray]:
    """Class index per entry (-1: none of ``classes``) and a bool array of rows whose labels are not one-hot.

    ``labels`` maps every label class the file holds to its column, selected or not, so a row is one-hot when
    exactly one of all of them is 1 and the others 0, whatever their dtypes (float, bool, int32).
    """
    n_ones = bad = class_index = None
    for cls, name in labels.items():
        values = _per_jet(columns[name], path, name)
        if n_ones is None:
            n_ones = np.zeros(len(values), np.int16)
            bad = np.zeros(len(values), bool)
            class_index = np.full(len(values), -1, np.int16)
        is_one = values == 1
        bad |= ~(is_one | (values == 0))
        n_ones += is_one
        if cls in classes:
            class_index[is_one] = classes.index(cls)
    bad |= n_ones != 1
    class_index[bad] = -1
    return class_index, bad


def _not_one_hot_error(path: str, labels: Mapping[str, str], n_bad: int, n_total: int, first: int) -> DataError:
    return DataError(f"{path}: {n_bad} of {n_total} jets have labels that are not one-hot (exactly one of "
                     f"{', '.join(labels.values())} must be 1 and the others 0); the first is entry {first}")


def plan_files(paths: str | Iterable[str], *, tree: str = "tree", branches: Mapping[str, str] | None = None,
               classes: Sequence[str] = ("QCD", "Tbqq"), max_jets_per_class: int | None = None,
               scalar_branches: Sequence[str] = DEFAULT_SCALARS, chunk_entries: int = CHUNK_ENTRIES,
               on_labels: Callable[[int, FilePlan, np.ndarray, JetSource], None] | None = None,
               sources: SourceCache | None = None, progress: bool = False) -> ReadPlan:
    """The label pass: validate every file's schema and labels, choose the entries to use.

    ``on_labels(i, plan, class_index, source)`` is called for each used file, still open, with its per-entry
    class index (-1 where the entry is not used), so that callers can derive more (the streaming splits and
    checks) without opening it again. Files are opened through ``sources`` when given, so that a following
    pass can reuse them.
    """
    if sources is None:
        with SourceCache(tree, capacity=0) as own_sources:
            return plan_files(paths, tree=tree, branches=branches, classes=classes,
                              max_jets_per_class=max_jets_per_class, scalar_branches=scalar_branches,
                              chunk_entries=chunk_entries, on_labels=on_labels, sources=own_sources,
                              progress=progress)
    classes = _check_classes(classes)
    if max_jets_per_class is not None and max_jets_per_class < 1:
        raise DataError(f"data.max_jets_per_class must be a positive integer or null, got {max_jets_per_class}")
    files = expand_paths(paths)
    remaining = np.full(len(classes), np.iinfo(np.int64).max if max_jets_per_class is None else max_jets_per_class,
                        np.int64)
    plans: list[FilePlan] = []
    skipped: list[str] = []
    n_unselected = 0
    for path in _progress(files, progress, "labels"):
        if not remaining.any():
            skipped.append(path)
            continue
        source = sources.get(path)
        try:
            schema = resolve_schema(source, branches, scalar_branches)
            chunks = source.chunks(chunk_entries)
            class_index = np.empty(source.num_entries, np.int16)
            n_bad, first_bad = 0, -1
            for start, stop in _merge_chunks(chunks, LABEL_CHUNK_ENTRIES):
                cols = source.read(list(schema.labels.values()), start, stop)
                class_index[start:stop], bad = label_classes(cols, schema.labels, classes, path)
                if bad.any():
                    first_bad = first_bad if n_bad else start + int(np.argmax(bad))
                    n_bad += int(bad.sum())
            if n_bad:
                raise _not_one_hot_error(path, schema.labels, n_bad, source.num_entries, first_bad)
            n_unselected += int((class_index < 0).sum())
            stops, counts = [], []
            for k in range(len(classes)):
                rows = np.flatnonzero(class_index == k)
                take = int(min(len(rows), remaining[k]))
                class_index[rows[take:]] = -1
                stops.append(int(rows[take]) if take < len(rows) else source.num_entries)
                counts.append(take)
            remaining -= np.asarray(counts)
            if not any(counts):
                skipped.append(path)
                continue
            plan = FilePlan(path, schema, source.num_entries, chunks, tuple(stops), tuple(counts))
            if on_labels is not None:
                on_labels(len(plans), plan, class_index, source)
            plans.append(plan)
        finally:
            sources.release(source)
    empty = [cls for k, cls in enumerate(classes) if not any(p.n_per_class[k] for p in plans)]
    if empty:
        raise DataError(f"no jets of class {', '.join(empty)} (label_{empty[0]} = 1) in {len(files)} file(s) "
                        f"({_short_list(files)}); selected classes: {list(classes)}. Check data.classes and "
                        f"data.paths")
    present = [set(p.schema.scalars) for p in plans]
    scalar_names = tuple(s for s in scalar_branches if all(s in names for names in present))
    return ReadPlan(tuple(plans), tuple(skipped), classes, scalar_names, n_unselected)


def _short_list(items: Sequence[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _merge_chunks(chunks: Sequence[tuple[int, int]], target: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in chunks:
        if merged and merged[-1][1] == start and stop - merged[-1][0] <= target:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from softsym.progress import progress_bar

    return progress_bar(items, desc=desc, unit="file")


def read_chunk(source: JetSource, plan: FilePlan, classes: Sequence[str], scalar_names: Sequence[str],
               start: int, stop: int, *, class_index: np.ndarray | None = None,
               keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
               check: ParticleCheck = ParticleCheck()) -> Chunk:  # noqa: B008 - frozen, never mutated
    """Read entries [start, stop) of a file that the label pass has planned (and so checked).

    ``class_index``: the label pass's class per entry of the range (-1: not used), which saves reading labels
    again; without it only the selected classes' label columns are read (the label pass checked that the rows
    are one-hot). ``keep(entries, class_index)`` filters the rows further. Particle columns come as float32;
    unphysical particles of the used rows raise, are removed or are kept as ``check`` says (and counted).
    """
    schema = plan.schema
    selected = {k: schema.labels[cls] for k, cls in enumerate(classes) if cls in schema.labels}
    cols = source.read([*schema.p4, *(schema.scalars[s] for s in scalar_names),
                        *(selected.values() if class_index is None else ())], start, stop)
    entries = np.arange(start, stop, dtype=np.int64)
    if class_index is None:
        class_index = np.full(stop - start, -1, np.int16)
        for k, name in selected.items():
            class_index[_per_jet(cols[name], plan.path, name) == 1] = k
        class_index[entries >= np.asarray(plan.class_stops, np.int64)[np.maximum(class_index, 0)]] = -1
    used = class_index >= 0
    if keep is not None:
        used &= keep(entries, class_index)
    offsets = None
    flats = []
    for name in [*schema.p4, *(schema.scalars[s] for s in scalar_names)]:
        these_offsets, values = _per_particle(cols[name], plan.path, name)
        if offsets is None:
            offsets = these_offsets
        elif not np.array_equal(offsets, these_offsets):
            raise DataError(f"{plan.path}: {name} and {schema.p4[0]} have different numbers of particles in "
                            f"some jets of entries {start}-{stop}; every part_* column must have one value per "
                            f"particle")
        n_bad = values.size - int(np.count_nonzero(np.isfinite(values)))
        if n_bad:
            raise DataError(f"{plan.path}: {name} has {n_bad} NaN/inf values in entries {start}-{stop}; "
                            f"expected finite numbers (within float32's range)")
        flats.append(values)
    flats, offsets, n_unphysical = check_particles(check, plan.path, schema.p4, flats, offsets, used, start, stop)
    counts = np.diff(offsets)
    empty = used & (counts == 0)
    rows = np.flatnonzero(used & (counts > 0))
    return Chunk(offsets, rows, class_index[rows].astype(np.int64), flats[:4], flats[4:], int(empty.sum()),
                 n_unphysical)


def read_jets(paths: str | Iterable[str], *, tree: str = "tree", branches: Mapping[str, str] | None = None,
              classes: Sequence[str] = ("QCD", "Tbqq"), max_particles: int = 128,
              max_jets_per_class: int | None = None, scalar_branches: Sequence[str] = DEFAULT_SCALARS,
              progress: bool = False, chunk_entries: int = CHUNK_ENTRIES,
              observers: Sequence[str] = (), unphysical: str = "error",
              unphysical_tolerance: float = DEFAULT_TOLERANCE) -> tuple[JetArrays, ReadSummary]:
    """Read every selected jet of ``paths`` (files or globs) into padded ``JetArrays``.

    Class index = position in ``classes``. Jets of other classes are skipped, jets without constituents are
    dropped (both counted in the summary). ``max_jets_per_class`` takes the first jets of each class in file
    order, counted by label before empty jets are dropped (so that the streaming loader, which cannot see
    empty jets in advance, selects the same jets). Every bad input raises one ``DataError`` naming the file
    and the problem. ``observers``: per-jet columns every file must hold, kept in ``JetArrays.observers``
    beside the JetClass jet branches that every file holds (``softsym.data.observers``). Jets longer than
    ``max_particles`` keep their hardest particles (counted, with the particles lost); ``unphysical``
    (error | drop | keep) and ``unphysical_tolerance``: ``softsym.data.checks``.
    """
    if max_particles < 1:
        raise DataError(f"data.max_particles must be a positive integer, got {max_particles}")
    check = ParticleCheck(unphysical, unphysical_tolerance)
    class_indices: dict[str, np.ndarray] = {}  # 2 bytes per jet: cheaper than reading the labels again

    def keep_labels(_: int, file_plan: FilePlan, class_index: np.ndarray, __: JetSource) -> None:
        class_indices[file_plan.path] = class_index

    with SourceCache(tree, memory_map=True) as sources:
        plan = plan_files(paths, tree=tree, branches=branches, classes=classes,
                          max_jets_per_class=max_jets_per_class, scalar_branches=scalar_branches,
                          chunk_entries=chunk_entries, on_labels=keep_labels, sources=sources,
                          progress=progress)
        capacity = sum(plan.n_per_class)
        n_scalars = len(plan.scalar_names)
        # np.zeros maps fresh pages lazily: slots left over by dropped empty jets cost no memory.
        p4 = np.zeros((capacity, max_particles, 4), np.float32)
        mask = np.zeros((capacity, max_particles), bool)
        scalars = np.zeros((capacity, max_particles, n_scalars), np.float32)
        labels = np.zeros(capacity, np.int64)
        observer_reader = ObserverReader(observers, capacity, branches)
        n_filled, counts = 0, DataCounts()
        for file_plan in _progress(plan.files, progress, "jets"):
            source = sources.get(file_plan.path)
            file_classes = class_indices.pop(file_plan.path)
            try:
                observer_reader.open_file(source)
                for start, stop in file_plan.chunks:
                    if start >= file_plan.entry_stop:
                        break
                    stop = min(stop, file_plan.entry_stop)
                    chunk = read_chunk(source, file_plan, plan.classes, plan.scalar_names, start, stop,
                                       class_index=file_classes[start:stop], check=check)
                    end = n_filled + len(chunk.rows)
                    pad_chunk(chunk, p4[n_filled:end], mask[n_filled:end], scalars[n_filled:end])
                    labels[n_filled:end] = chunk.labels
                    observer_reader.read(source, start, stop, chunk.rows, n_filled)
                    n_filled, counts = end, counts + chunk_counts(chunk, max_particles)
            finally:
                sources.release(source)
    if n_filled == 0:
        raise DataError(f"no jets with constituents in {_short_list([f.path for f in plan.files])}: all "
                        f"{counts.n_empty} selected jets are empty")
    arrays = JetArrays(p4[:n_filled], mask[:n_filled], labels[:n_filled], scalars[:n_filled], plan.classes,
                       plan.scalar_names, observer_reader.result(n_filled))
    per_class = np.bincount(arrays.labels, minlength=len(plan.classes))
    summary = ReadSummary(
        files=tuple(f.path for f in plan.files), files_skipped=plan.files_skipped, class_names=plan.classes,
        n_jets=n_filled, n_jets_per_class={c: int(per_class[k]) for k, c in enumerate(plan.classes)},
        n_dropped_empty=counts.n_empty, n_truncated=counts.n_truncated_jets, n_unselected=plan.n_unselected,
        scalar_names=plan.scalar_names, n_truncated_particles=counts.n_truncated_particles,
        n_unphysical=counts.n_unphysical)
    return arrays, summary


def chunk_counts(chunk: Chunk, max_particles: int) -> DataCounts:
    """What the checks found in one chunk's used jets: truncated jets and particles, unphysical, empty."""
    n_jets, n_lost = truncation(np.diff(chunk.offsets)[chunk.rows], max_particles)
    return DataCounts(n_jets, n_lost, chunk.n_unphysical, chunk.n_empty)
