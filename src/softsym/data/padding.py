"""From flat particle columns to padded, pT-sorted arrays, without a Python loop over jets or particles.

A ``Chunk`` holds the particle columns of some jets still flat (values + offsets, as ``files.JetSource``
reads them). ``pad_chunk`` checks the pT order inside each jet with one vectorised comparison and sorts only
the jets found out of order (one integer-key argsort); each particle's values are packed side by side and
written into the padded arrays with one masked assignment. The reader and the streaming loader both pad
through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Chunk:
    """Particle columns of the used, non-empty jets of one chunk, still flat (content + offsets)."""

    offsets: np.ndarray          # [n_rows + 1] into the flat columns, starting at 0
    rows: np.ndarray             # which rows of the chunk to keep (used and non-empty), ascending
    labels: np.ndarray           # [len(rows)] class index
    p4: list[np.ndarray]         # flat E, px, py, pz
    scalars: list[np.ndarray]    # flat scalar columns
    n_empty: int                 # used jets dropped for having no constituents
    n_unphysical: int = 0        # unphysical particles of the used jets (removed when dropped)


def _segment_positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Flat positions of the segments [starts[i], starts[i] + counts[i]), concatenated."""
    segment_offsets = np.cumsum(counts) - counts
    return np.repeat(starts - segment_offsets, counts) + np.arange(int(counts.sum()), dtype=np.int64)


def _pt_order(pt2: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """Permutation of the flat particles that sorts each jet by pT descending; None when already sorted.

    Only the jets found out of order are sorted, with one argsort on a (jet, -pT) integer key: the bit
    pattern of a non-negative float32 orders like its value, so the key needs no float comparisons. pT² of
    another dtype is converted to float32 first (the padded arrays' type, so the order is theirs).
    """
    pt2 = np.ascontiguousarray(pt2, dtype=np.float32)
    rising = pt2[1:] > pt2[:-1]
    rising[offsets[1:-1] - 1] = False  # a jet's first particle may be harder than the last of the one before
    if not rising.any():
        return None
    jets = np.unique(np.searchsorted(offsets, np.flatnonzero(rising), side="right") - 1)
    counts = offsets[jets + 1] - offsets[jets]
    positions = _segment_positions(offsets[jets], counts)
    key = np.repeat(np.arange(len(jets), dtype=np.uint64) << np.uint64(32), counts)
    key |= (~pt2[positions].view(np.uint32)).astype(np.uint64)
    order = np.arange(len(pt2), dtype=np.int64)
    order[positions] = positions[np.argsort(key, kind="stable")]
    return order


def _fill_slots(out: np.ndarray, mask: np.ndarray, columns: Sequence[np.ndarray], src: np.ndarray | None) -> None:
    """``out[mask] = stack(columns)[src]`` for a contiguous float32 ``out [m, P, C]``, in row-major slot order.

    numpy's masked and fancy assignments cost per element, not per byte, so each particle's C values are
    packed side by side and written as one C*4-byte (void) element: several times faster than C passes.
    """
    n_columns = out.shape[-1]
    packed = np.empty((len(columns[0]) if src is None else len(src), n_columns), np.float32)
    for j, values in enumerate(columns):
        packed[:, j] = values if src is None else values[src]
    record = np.dtype((np.void, 4 * n_columns))
    out.reshape(-1, n_columns).view(record)[:, 0][mask.reshape(-1)] = packed.view(record)[:, 0]


def clear_slots(out: np.ndarray, slots: np.ndarray) -> None:
    """Zero ``out[slots]`` for a contiguous ``out [m, P, C]`` and a bool ``slots [m, P]`` (one write per slot)."""
    if out.shape[-1]:
        record = np.dtype((np.void, out.itemsize * out.shape[-1]))
        out.reshape(-1, out.shape[-1]).view(record)[:, 0][slots.reshape(-1)] = np.zeros((), record)


def pad_chunk(chunk: Chunk, p4_out: np.ndarray, mask_out: np.ndarray, scalars_out: np.ndarray) -> int:
    """Write the kept rows of ``chunk`` into ``p4_out [m, P, 4]``, ``mask_out``, ``scalars_out [m, P, S]``.

    Constituents end up sorted by pT (of their float32 values), truncated to P; ``mask_out`` is overwritten.
    Only the slots of real constituents are written in ``p4_out`` and ``scalars_out``: the others must hold
    zeros already. Returns the number of jets that had more than P constituents.
    """
    m, n_particles = mask_out.shape
    if not all(a.flags.c_contiguous for a in (p4_out, mask_out, scalars_out)):
        raise ValueError("pad_chunk writes through flat views: its outputs must be C-contiguous")
    if m == 0:
        return 0
    counts = np.diff(chunk.offsets)
    src = None  # flat index of each output particle in the chunk's columns; None: the identity
    if len(chunk.rows) != len(counts):
        counts = counts[chunk.rows]
        src = _segment_positions(chunk.offsets[:-1][chunk.rows], counts)
    offsets = np.zeros(m + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    px, py = chunk.p4[1], chunk.p4[2]
    if src is not None:
        px, py = px[src], py[src]
    order = _pt_order(px * px + py * py, offsets)
    if order is not None:
        src = order if src is None else src[order]
    n_truncated = int(np.count_nonzero(counts > n_particles))
    if n_truncated:
        within = np.arange(int(offsets[-1])) < np.repeat(offsets[:-1] + n_particles, counts)
        src = np.flatnonzero(within) if src is None else src[within]
    np.less(np.arange(n_particles), np.minimum(counts, n_particles)[:, None], out=mask_out)
    _fill_slots(p4_out, mask_out, chunk.p4, src)
    if chunk.scalars:
        _fill_slots(scalars_out, mask_out, chunk.scalars, src)
    return n_truncated
