"""A simple, vectorised detector response for generated particles, applied before jet clustering.

Charged particles (tracks) get a pT resolution, neutral ones (calorimeter) an energy resolution; photons and
neutral hadrons have separate stochastic/constant terms (ECAL vs HCAL). Optionally the neutrals are first
merged into eta-phi cells (towers), which adds a granularity no Lorentz transformation respects; then a
minimum pT removes what a detector would not see. Every step works on flat numpy arrays of all particles of
a batch of events, and all randomness comes from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from softsym.data.errors import DataError

# Particle kinds: the JetClass PID flags (part_isChargedHadron, ...), in this order.
CHARGED_HADRON, NEUTRAL_HADRON, PHOTON, ELECTRON, MUON = range(5)
KIND_BRANCHES = ("part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron",
                 "part_isMuon")


@dataclass(frozen=True)
class Particles:
    """Flat arrays over all particles of a batch of events, grouped by ``event`` (non-decreasing)."""

    event: np.ndarray   # int64: index of the event within the batch
    px: np.ndarray      # float64, GeV
    py: np.ndarray
    pz: np.ndarray
    energy: np.ndarray
    charge: np.ndarray  # int32, units of e
    kind: np.ndarray    # int8: CHARGED_HADRON ... MUON

    def __len__(self) -> int:
        return int(self.event.shape[0])

    def take(self, index: np.ndarray) -> Particles:
        return Particles(*(getattr(self, f.name)[index] for f in fields(self)))

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @property
    def eta(self) -> np.ndarray:
        return np.arcsinh(self.pz / self.pt)

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)

    @staticmethod
    def concatenate_by_event(parts: list[Particles]) -> Particles:
        """Concatenate and restore the grouping by event (stable, so each part keeps its order)."""
        joined = Particles(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Particles)))
        return joined.take(np.argsort(joined.event, kind="stable"))


@dataclass(frozen=True)
class DetectorConfig:
    """Resolutions (relative, added in quadrature), minimum pT and optional neutral granularity.

    charged:  sigma_pT / pT = charged_pt_res_linear * pT[GeV]  (+)  charged_pt_res_constant
    photons:  sigma_E / E   = photon_res_stochastic / sqrt(E[GeV])  (+)  photon_res_constant
    neutral hadrons: the same with hadron_res_stochastic, hadron_res_constant.
    ``cell_size`` (eta and phi width of a calorimeter cell) merges neutrals per cell when set; None = off.
    ``enabled=False`` leaves the particles untouched (generator level), as does ``detector=None``.
    """

    enabled: bool = True
    charged_pt_res_linear: float = 1e-4
    charged_pt_res_constant: float = 0.005
    photon_res_stochastic: float = 0.05
    photon_res_constant: float = 0.01
    hadron_res_stochastic: float = 0.5
    hadron_res_constant: float = 0.05
    min_pt_charged: float = 0.3
    min_pt_neutral: float = 0.5
    cell_size: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "enabled":
                if not isinstance(value, bool):
                    raise DataError(f"detector.enabled must be true or false, got {value!r}")
                continue
            if value is None and f.name == "cell_size":
                continue
            if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf):
                raise DataError(f"detector.{f.name} must be a finite number >= 0, got {value!r}")
            if f.name == "cell_size" and not 0 < value <= 1:
                raise DataError(f"detector.cell_size must be null (off) or in (0, 1], got {value!r}")
            object.__setattr__(self, f.name, float(value))  # 0 and 0.0 are the same configuration


def apply_detector(particles: Particles, config: DetectorConfig, rng: np.random.Generator) -> Particles:
    """Smeared, merged and thresholded particles, still grouped by event."""
    if not config.enabled:
        return particles
    charged = particles.take(np.flatnonzero(particles.charge != 0))
    neutral = particles.take(np.flatnonzero(particles.charge == 0))
    if config.cell_size is not None:
        neutral = _merge_into_cells(neutral, config.cell_size)
    charged = _smear_charged(charged, config, rng)
    neutral = _smear_neutral(neutral, config, rng)
    charged = charged.take(np.flatnonzero(charged.pt >= config.min_pt_charged))
    neutral = neutral.take(np.flatnonzero(neutral.pt >= config.min_pt_neutral))
    return Particles.concatenate_by_event([charged, neutral])


def _smear_charged(p: Particles, config: DetectorConfig, rng: np.random.Generator) -> Particles:
    """Scale the 3-momentum by the smeared pT / pT (direction kept) and recompute E from the mass."""
    pt = p.pt
    sigma = np.hypot(config.charged_pt_res_linear * pt, config.charged_pt_res_constant)
    scale = 1.0 + sigma * rng.standard_normal(len(p))
    p = p.take(np.flatnonzero(scale > 0))
    scale = scale[scale > 0]
    p2 = p.px**2 + p.py**2 + p.pz**2
    mass2 = np.maximum(p.energy**2 - p2, 0.0)
    return Particles(p.event, p.px * scale, p.py * scale, p.pz * scale, np.sqrt(scale**2 * p2 + mass2),
                     p.charge, p.kind)


def _smear_neutral(p: Particles, config: DetectorConfig, rng: np.random.Generator) -> Particles:
    """Scale the whole 4-vector by the smeared E / E: a calorimeter measures energy, not direction."""
    photon = p.kind == PHOTON
    stochastic = np.where(photon, config.photon_res_stochastic, config.hadron_res_stochastic)
    constant = np.where(photon, config.photon_res_constant, config.hadron_res_constant)
    sigma = np.hypot(stochastic / np.sqrt(np.maximum(p.energy, 1e-12)), constant)
    scale = 1.0 + sigma * rng.standard_normal(len(p))
    keep = scale > 0  # a fluctuation below zero energy is a deposit the detector does not see
    p, scale = p.take(np.flatnonzero(keep)), scale[keep]
    return Particles(p.event, p.px * scale, p.py * scale, p.pz * scale, p.energy * scale, p.charge, p.kind)


def _merge_into_cells(p: Particles, cell_size: float) -> Particles:
    """Sum the energy of photons (ECAL) and of neutral hadrons (HCAL) per event and eta-phi cell; each cell
    becomes one massless particle at the cell centre."""
    if len(p) == 0:
        return p
    n_phi = max(1, round(2 * math.pi / cell_size))
    phi_width = 2 * math.pi / n_phi
    i_eta = np.floor(p.eta / cell_size).astype(np.int64)
    i_phi = np.floor((p.phi + math.pi) / phi_width).astype(np.int64) % n_phi
    eta_offset = int(np.abs(i_eta).max()) + 1
    n_eta = 2 * eta_offset
    is_photon = (p.kind == PHOTON).astype(np.int64)
    key = ((p.event * 2 + is_photon) * n_eta + (i_eta + eta_offset)) * n_phi + i_phi
    cells, first, cell_of = np.unique(key, return_index=True, return_inverse=True)
    energy = np.bincount(cell_of, weights=p.energy, minlength=len(cells))
    eta = ((i_eta[first]) + 0.5) * cell_size
    phi = -math.pi + (i_phi[first] + 0.5) * phi_width
    pt = energy / np.cosh(eta)
    kind = np.where(is_photon[first] == 1, PHOTON, NEUTRAL_HADRON).astype(np.int8)
    # np.unique sorts by key, whose leading digit is the event: the cells stay grouped by event
    return Particles(p.event[first], pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), energy,
                     np.zeros(len(cells), np.int32), kind)
