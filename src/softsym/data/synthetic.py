"""Synthetic jets with known prong structure, for tests and examples that need jets in seconds.

Not a physics generator (that is ``softsym.data.pythia``, Pythia 8 + FastJet): signal jets are three
hard prongs at the angular separation of a boosted top (ΔR ~ 2m/pT), background jets one hard core with a
wide soft spray. Massless constituents, pT-sorted, padded; fully vectorised and seeded.
"""

from __future__ import annotations

import numpy as np

from softsym.data.jets import JetArrays


def synthetic_jets(n_per_class: int, *, max_particles: int = 32, seed: int = 0, pt_range=(550.0, 650.0),
                   eta_max: float = 2.0) -> JetArrays:
    rng = np.random.default_rng(seed)
    n = 2 * n_per_class
    labels = np.repeat([0, 1], n_per_class)
    jet_pt = rng.uniform(*pt_range, n)
    jet_eta = rng.uniform(-eta_max, eta_max, n)
    jet_phi = rng.uniform(-np.pi, np.pi, n)
    n_part = rng.integers(max_particles // 3, max_particles + 1, n)

    # prong directions and momentum fractions: 3 prongs (signal) or 1 core + diffuse spray (background)
    sep = np.where(labels == 1, 2 * 175.0 / jet_pt, 0.0)[:, None]
    angle = rng.uniform(0, 2 * np.pi, (n, 1)) + np.array([0.0, 2.1, 4.2])
    prong_eta = sep * 0.6 * np.cos(angle)
    prong_phi = sep * 0.6 * np.sin(angle)
    slot = np.arange(max_particles)[None, :]
    prong = rng.integers(0, 3, (n, max_particles))
    width = np.where(labels == 1, 0.05, 0.15)[:, None]
    deta = np.take_along_axis(prong_eta, prong, 1) + rng.normal(0, 1, (n, max_particles)) * width
    dphi = np.take_along_axis(prong_phi, prong, 1) + rng.normal(0, 1, (n, max_particles)) * width
    frac = rng.exponential(1.0, (n, max_particles)) * np.exp(-0.15 * slot)
    mask = slot < n_part[:, None]
    frac = np.where(mask, frac, 0.0)
    frac /= frac.sum(1, keepdims=True)
    order = np.argsort(-frac, axis=1)
    frac, deta, dphi = (np.take_along_axis(a, order, 1) for a in (frac, deta, dphi))
    pt = frac * jet_pt[:, None]
    eta = jet_eta[:, None] + deta
    phi = jet_phi[:, None] + dphi
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    p4 = np.where(mask[..., None], p4, 0.0).astype(np.float32)
    charge = np.where(mask, rng.choice([-1.0, 0.0, 1.0], (n, max_particles)), 0.0).astype(np.float32)
    perm = rng.permutation(n)
    return JetArrays(p4[perm], mask[perm], labels[perm].astype(np.int64), charge[perm, :, None],
                     ("QCD", "Tbqq"), ("part_charge",))
