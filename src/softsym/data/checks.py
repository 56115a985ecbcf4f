"""Checks on the particles read, and the counts the data stage logs about them.

Unphysical particles: E ≤ 0, or a 3-momentum longer than the energy beyond a relative tolerance,
|p| > (1 + tolerance) · E (a spacelike 4-vector, m² < −((1 + tolerance)² − 1) E² ≈ −2 · tolerance · E²).
The default tolerance, 1e-4, is a thousand times the float32 rounding of a massless particle's E and |p|
(~1e-7 relative), so massless particles written in single precision pass, while a spacelike 4-vector with
|m| above ~1.4% of its energy does not. ``data.unphysical`` says what to do with them: ``error`` (refuse the
file, naming it, its branches and the first entry), ``drop`` (remove them before anything else sees the jet:
padding, the pT sort, the jet axis and the features) or ``keep``; both of the latter count them.
Truncation: jets with more than ``data.max_particles`` particles keep their hardest ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from softsym.data.errors import DataError

UNPHYSICAL_CHOICES = ("error", "drop", "keep")
DEFAULT_TOLERANCE = 1e-4

__all__ = ["DEFAULT_TOLERANCE", "UNPHYSICAL_CHOICES", "DataCounts", "ParticleCheck", "check_particles",
           "truncation", "unphysical_particles"]


@dataclass(frozen=True)
class ParticleCheck:
    """What to do with unphysical particles (``data.unphysical``) and the tolerance that defines them."""

    unphysical: str = "error"
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if self.unphysical not in UNPHYSICAL_CHOICES:
            raise DataError(f"data.unphysical must be one of {', '.join(UNPHYSICAL_CHOICES)}, "
                            f"got {self.unphysical!r}")
        tolerance = self.tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float | np.number) \
                or not 0 <= tolerance < math.inf:
            raise DataError(f"data.unphysical_tolerance must be a number >= 0 (relative, e.g. 1e-4), "
                            f"got {tolerance!r}")
        object.__setattr__(self, "tolerance", float(tolerance))


def unphysical_particles(energy: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray,
                         tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks (E ≤ 0, spacelike beyond ``tolerance``) over flat float32 particle columns.

    Computed in float32: the comparison's own rounding (~1e-7) is far below any useful tolerance.
    """
    not_positive = ~(energy > 0)
    p2 = px * px
    p2 += py * py
    p2 += pz * pz
    limit = energy * np.float32(1.0 + tolerance)
    spacelike = p2 > limit * limit
    spacelike &= ~not_positive
    return not_positive, spacelike


@dataclass(frozen=True)
class DataCounts:
    """What the checks found in the jets used (all splits): the data stage's check metrics."""

    n_truncated_jets: int = 0          # jets with more than max_particles particles, cut to the hardest
    n_truncated_particles: int = 0     # particles those jets lost
    n_unphysical: int = 0              # unphysical particles met (dropped with data.unphysical=drop)
    n_empty: int = 0                   # selected jets without particles (after drop), dropped

    def __add__(self, other: DataCounts) -> DataCounts:
        return DataCounts(self.n_truncated_jets + other.n_truncated_jets,
                          self.n_truncated_particles + other.n_truncated_particles,
                          self.n_unphysical + other.n_unphysical, self.n_empty + other.n_empty)

    def metrics(self) -> dict[str, float]:
        """``data_truncated_jets``, ``data_truncated_particles_mean`` (particles lost per truncated jet, 0 when
        none is), ``data_unphysical_particles`` and ``data_dropped_jets``."""
        lost = self.n_truncated_particles / self.n_truncated_jets if self.n_truncated_jets else 0.0
        return {"data_truncated_jets": float(self.n_truncated_jets), "data_truncated_particles_mean": lost,
                "data_unphysical_particles": float(self.n_unphysical), "data_dropped_jets": float(self.n_empty)}


def truncation(counts: np.ndarray, max_particles: int) -> tuple[int, int]:
    """(jets longer than ``max_particles``, particles they lose) for per-jet particle ``counts``."""
    over = counts[counts > max_particles]
    return len(over), int(over.sum()) - len(over) * max_particles


def check_particles(check: ParticleCheck, path: str, names: Sequence[str], flats: list[np.ndarray],
                    offsets: np.ndarray, used: np.ndarray, start: int,
                    stop: int) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Apply ``check`` to one chunk's flat float32 columns (E, px, py, pz first; ``names``: the file's names of
    those four): (columns, offsets, unphysical particles of the ``used`` rows).

    ``error`` raises a DataError naming the file, the branches and the first entry; ``drop`` removes the
    unphysical particles of the used rows (a jet left without particles is then empty); ``keep`` counts them.
    """
    counts = np.diff(offsets)
    not_positive, spacelike = unphysical_particles(*flats[:4], check.tolerance)
    bad = not_positive | spacelike
    if not bad.any():
        return flats, offsets, 0
    bad &= np.repeat(used, counts)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0 or check.unphysical == "keep":
        return flats, offsets, n_bad
    if check.unphysical == "error":
        first = int(np.argmax(bad))
        entry = start + int(np.searchsorted(offsets, first, side="right")) - 1
        n_not_positive = int(np.count_nonzero(bad & not_positive))
        energy, px, py, pz = (float(values[first]) for values in flats[:4])
        e_name, px_name, py_name, pz_name = names
        raise DataError(
            f"{path}: {n_bad} unphysical particle{'s' * (n_bad != 1)} in entries {start}-{stop} ({n_not_positive} "
            f"with {e_name} <= 0, "
            f"{n_bad - n_not_positive} with {e_name} < |({px_name}, {py_name}, {pz_name})| beyond the relative "
            f"tolerance {check.tolerance:g}, i.e. a negative mass squared); the first is in entry {entry} "
            f"({e_name} = {energy:.6g}, |p| = {math.sqrt(px * px + py * py + pz * pz):.6g}). Set "
            f"data.unphysical=drop to remove such particles, data.unphysical=keep to use them as they are, or "
            f"widen data.unphysical_tolerance")
    lost = np.bincount(np.repeat(np.arange(len(counts)), counts)[bad], minlength=len(counts))
    new_offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts - lost, out=new_offsets[1:])
    return [values[~bad] for values in flats], new_offsets, n_bad
