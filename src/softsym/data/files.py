"""Opening jet files of every supported form behind one small interface.

Forms: TTrees written by ROOT (``std::vector`` branches) or by uproot (counter + ``float[]``), RNTuples, and
Parquet written by awkward. Each is opened as a ``JetSource`` that knows its entry count, its column names,
chunk boundaries that do not split a cluster / row group (so no compressed page is decompressed twice), and
how to read a few columns over an entry range as plain numpy: one value per jet, or (offsets, flat values)
per particle (``schema.Column``). TTree branches of numbers are read basket by basket straight into such
arrays (1.5-2x faster than ``TTree.arrays``, which builds awkward arrays); anything else goes through
uproot's / awkward's own readers.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence

import awkward as ak
import numpy as np

from softsym.data.errors import DataError
from softsym.data.schema import Column, flat_jagged, flat_scalar

_ROOT_MAGIC = b"root"
_PARQUET_MAGIC = b"PAR1"
_GLOB_CHARS = set("*?[")


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files named by ``paths`` (files or globs), in the given order, globs sorted, duplicates dropped."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise DataError("no input files: data.paths is empty; give ROOT/Parquet files or globs")
    out: list[str] = []
    for item in items:
        text = os.path.expanduser(os.fspath(item))
        if _GLOB_CHARS & set(text):
            matches = sorted(m for m in glob.glob(text, recursive=True) if os.path.isfile(m))
            if not matches:
                raise DataError(f"{text}: no file matches this glob")
            out.extend(matches)
        elif os.path.isdir(text):
            raise DataError(f"{text}: is a directory; give files or a glob such as {os.path.join(text, '*.root')}")
        elif not os.path.isfile(text):
            raise DataError(f"{text}: file not found")
        else:
            out.append(text)
    return list(dict.fromkeys(out))


def _group_boundaries(boundaries: Sequence[int], target: int) -> tuple[tuple[int, int], ...]:
    """Chunks of about ``target`` entries, cut at ``boundaries`` (cluster / row-group starts, free cuts).

    A cluster longer than 4 x target is cut inside (its compressed pages are then read more than once) so that
    the memory of one chunk stays bounded whatever the file.
    """
    chunks: list[tuple[int, int]] = []
    start = boundaries[0]
    for stop in [*boundaries[1:-1], boundaries[-1]]:
        if stop - start < target and stop != boundaries[-1]:
            continue
        if stop - start > 4 * target:
            cuts = np.linspace(start, stop, -(-(stop - start) // target) + 1).round().astype(int)
            chunks.extend(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))
        elif stop > start:
            chunks.append((start, stop))
        start = stop
    return tuple(chunks)


class JetSource:
    """One open input file: a TTree or RNTuple in a ROOT file, or a Parquet file."""

    kind: str  # "ttree" | "rntuple" | "parquet"
    description: str  # for messages: "TTree 'tree'", "RNTuple 'tree'", "Parquet file"
    path: str
    num_entries: int
    names: tuple[str, ...]

    def chunks(self, target_entries: int) -> tuple[tuple[int, int], ...]:
        raise NotImplementedError

    def _read(self, names: Sequence[str], start: int, stop: int) -> dict[str, Column]:
        raise NotImplementedError

    def read(self, names: Sequence[str], start: int, stop: int) -> dict[str, Column]:
        """Columns ``names`` over entries [start, stop); a broken file becomes a DataError naming it."""
        try:
            return self._read(list(dict.fromkeys(names)), start, stop)
        except DataError:
            raise
        except Exception as err:  # uproot/pyarrow raise many types for a damaged file
            raise DataError(
                f"{self.path}: could not read entries {start}-{stop} of {', '.join(names)} "
                f"({type(err).__name__}: {err}); the file is truncated or corrupt") from err

    def close(self) -> None:
        pass


def _numeric_dtype(interpretation) -> np.dtype | None:
    import uproot

    if isinstance(interpretation, uproot.AsDtype) and interpretation.inner_shape == () \
            and interpretation.from_dtype.fields is None and interpretation.from_dtype.kind in "biuf":
        return interpretation.from_dtype
    return None


def _read_branch(branch, start: int, stop: int) -> Column | None:
    """A branch of numbers (flat, ``float[]`` or ``std::vector``) over [start, stop), from its baskets.

    None when the branch is of another kind or a basket lacks entry offsets: the caller falls back to uproot.
    The baskets' bytes are joined first and decoded in a few whole-range numpy operations, since ROOT's
    baskets are often small (32 kB) and per-basket work would dominate. Values keep the file's (big-endian)
    byte order; callers convert what they compute with.
    """
    import uproot

    interpretation = branch.interpretation
    jagged = isinstance(interpretation, uproot.AsJagged)
    dtype = _numeric_dtype(interpretation.content if jagged else interpretation)
    if dtype is None:
        return None
    size = dtype.itemsize
    entry_offsets = np.asarray(branch.entry_offsets, np.int64)
    first = max(int(np.searchsorted(entry_offsets, start, side="right")) - 1, 0)
    last = int(np.searchsorted(entry_offsets, stop, side="left"))
    pieces, entry_bytes = [], []  # raw bytes of the entries wanted, and each entry's byte length
    for i in range(first, last):
        basket = branch.basket(i)
        lo = max(start, int(entry_offsets[i])) - int(entry_offsets[i])
        hi = min(stop, int(entry_offsets[i + 1])) - int(entry_offsets[i])
        if not jagged:
            if len(basket.data) != basket.num_entries * size:
                return None
            pieces.append(basket.data[lo * size:hi * size])
            continue
        if basket.byte_offsets is None:
            return None
        byte_offsets = basket.byte_offsets
        pieces.append(basket.data[byte_offsets[lo]:byte_offsets[hi]])
        entry_bytes.append(np.diff(byte_offsets[lo:hi + 1]))
    if not pieces:
        return (np.zeros(1, np.int64), np.zeros(0, dtype)) if jagged else np.zeros(0, dtype)
    raw = np.concatenate(pieces) if len(pieces) != 1 else pieces[0]
    if not jagged:
        return raw.view(dtype)
    lengths = np.concatenate(entry_bytes).astype(np.int64) if entry_bytes else np.zeros(0, np.int64)
    header = interpretation.header_bytes  # std::vector entries begin with a 10-byte header
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum((lengths - header) // size, out=offsets[1:])
    if header:
        unit = 2 if header % 2 == 0 and size % 2 == 0 else 1  # drop headers in 2-byte steps when possible
        words = raw.view(f"u{unit}")
        keep = np.ones(len(words), bool)
        entry_starts = (np.cumsum(lengths) - lengths) // unit
        keep[(entry_starts[:, None] + np.arange(header // unit)).ravel()] = False
        raw = words[keep].view(np.uint8)
    return offsets, raw.view(dtype)


def column_from_awkward(array: ak.Array, path: str, name: str) -> Column:
    """The same numpy form from an awkward array (RNTuple, Parquet, uproot's generic reader)."""
    return flat_jagged(array, path, name) if array.ndim > 1 else flat_scalar(array, path, name)


class _UprootSource(JetSource):
    def __init__(self, path: str, file, obj, kind: str, name: str) -> None:
        self.path, self._file, self._obj, self.kind = path, file, obj, kind
        self.description = f"{'TTree' if kind == 'ttree' else 'RNTuple'} '{name}'"
        self.num_entries = int(obj.num_entries)
        self.names = tuple(obj.keys()) if kind == "ttree" else tuple(obj.field_names)

    def chunks(self, target_entries: int) -> tuple[tuple[int, int], ...]:
        if self.num_entries == 0:
            return ()
        if self.kind == "ttree":
            boundaries = list(self._obj.common_entry_offsets())
        else:
            boundaries = [int(c.num_first_entry) for c in self._obj.cluster_summaries] + [self.num_entries]
        if boundaries[0] != 0 or boundaries[-1] != self.num_entries:
            boundaries = list(range(0, self.num_entries, target_entries)) + [self.num_entries]
        return _group_boundaries(boundaries, target_entries)

    def _read(self, names: Sequence[str], start: int, stop: int) -> dict[str, Column]:
        columns: dict[str, Column] = {}
        if self.kind == "ttree":
            for name in names:
                column = _read_branch(self._obj[name], start, stop)
                if column is not None:
                    columns[name] = column
        rest = [name for name in names if name not in columns]
        if rest:
            arrays = self._obj.arrays(rest, entry_start=start, entry_stop=stop,
                                      **({"how": dict} if self.kind == "ttree" else {}))
            columns.update({name: column_from_awkward(arrays[name], self.path, name) for name in rest})
        return columns

    def close(self) -> None:
        self._file.close()


class _ParquetSource(JetSource):
    kind = "parquet"
    description = "Parquet file"

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._file = pq.ParquetFile(path)
        meta = self._file.metadata
        self.num_entries = int(meta.num_rows)
        self.names = tuple(self._file.schema_arrow.names)
        self._group_starts = np.concatenate(
            [[0], np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])]).astype(np.int64)

    def chunks(self, target_entries: int) -> tuple[tuple[int, int], ...]:
        if self.num_entries == 0:
            return ()
        return _group_boundaries([int(b) for b in self._group_starts], target_entries)

    def _read(self, names: Sequence[str], start: int, stop: int) -> dict[str, Column]:
        first = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        last = int(np.searchsorted(self._group_starts, stop, side="left"))
        table = self._file.read_row_groups(list(range(first, last)), columns=list(names))
        offset = start - int(self._group_starts[first])
        table = table.slice(offset, stop - start)
        return {name: column_from_awkward(ak.from_arrow(table.column(name)), self.path, name) for name in names}

    def close(self) -> None:
        self._file.close()


def _root_objects(file) -> dict[str, str]:
    """Every TTree / RNTuple in an open ROOT file: name (no cycle) -> class name."""
    return {key.split(";")[0]: cls for key, cls in file.classnames(recursive=True).items()
            if cls == "TTree" or cls.startswith("ROOT::") and "RNTuple" in cls}


def open_source(path: str, tree: str = "tree", *, memory_map: bool = False) -> JetSource:
    """Open ``path`` (ROOT file with TTree/RNTuple ``tree``, or Parquet) as a ``JetSource``.

    ``memory_map`` reads a ROOT file through a memory map: faster, but the pages read count in the process's
    RSS until the file is closed, so the streaming loader, which keeps memory flat, leaves it off.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as err:
        raise DataError(f"{path}: cannot be opened ({err})") from err
    if head == _PARQUET_MAGIC:
        try:
            return _ParquetSource(path)
        except Exception as err:
            raise DataError(f"{path}: is not a readable Parquet file; it is truncated or corrupt "
                            f"({type(err).__name__}: {err})") from err
    if head != _ROOT_MAGIC:
        raise DataError(f"{path}: is neither a ROOT file nor a Parquet file (it starts with {head!r}; "
                        f"expected {_ROOT_MAGIC!r} or {_PARQUET_MAGIC!r})")
    import uproot

    try:
        # each range is read once, so uproot's array cache would only hold memory
        # uproot's default handler for local files reads through a background thread (fsspec's event
        # loop): plain reads in the calling thread are faster, and a memory map faster still
        options = ({"handler": uproot.MemmapSource} if memory_map else
                   {"handler": uproot.MultithreadedFileSource, "use_threads": False, "num_workers": 1})
        file = uproot.open(path, array_cache=None, **options)
        found = _root_objects(file)
    except Exception as err:
        raise DataError(f"{path}: is not a readable ROOT file; it is truncated or corrupt "
                        f"({type(err).__name__}: {err})") from err
    if tree not in found:
        file.close()
        listing = ", ".join(f"{name} ({cls})" for name, cls in found.items()) or "none"
        raise DataError(f"{path}: has no TTree or RNTuple named '{tree}'; found: {listing}. "
                        f"Set data.tree to one of these")
    try:
        obj = file[tree]
        return _UprootSource(path, file, obj, "ttree" if found[tree] == "TTree" else "rntuple", tree)
    except Exception as err:
        file.close()
        raise DataError(f"{path}: the {found[tree]} '{tree}' cannot be read; the file is truncated or corrupt "
                        f"({type(err).__name__}: {err})") from err


class SourceCache:
    """Keeps up to ``capacity`` files open for reuse: opening a TTree costs ~0.1 s of metadata per file.

    The first ``capacity`` files asked for stay open until ``close``; later ones are closed when released. For
    the scan patterns here (pass over all files, then again) this reuses what it can, unlike an LRU, which
    a scan longer than its capacity defeats.
    """

    def __init__(self, tree: str, capacity: int = 64, *, memory_map: bool = False) -> None:
        self.tree, self.capacity, self.memory_map = tree, capacity, memory_map
        self._open: dict[str, JetSource] = {}

    def get(self, path: str) -> JetSource:
        source = self._open.get(path)
        return source if source is not None else open_source(path, self.tree, memory_map=self.memory_map)

    def release(self, source: JetSource) -> None:
        if source.path in self._open:
            return
        if len(self._open) < self.capacity:
            self._open[source.path] = source
        else:
            source.close()

    def close(self) -> None:
        for source in self._open.values():
            source.close()
        self._open.clear()

    def __enter__(self) -> SourceCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
