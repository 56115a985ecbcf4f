"""Spectral density by stochastic Lanczos quadrature (SLQ; Ghorbani, Krishnan, Xiao 2019; Yao et al. 2020).

For a unit Rademacher probe v, m Lanczos steps give T = S diag(θ) Sᵀ, and vᵀ f(H) v ≈ Σ_j τ_j f(θ_j) with
τ_j = S_{0j}² (Gauss quadrature). Averaged over probes, the nodes θ and weights τ approximate the spectral
measure (1/n) Σ_i δ(λ − λ_i); ``density`` smooths it with a Gaussian of width ``sigma`` on a grid, and
``trace_of(f)`` = n · mean_p Σ_j τ_pj f(θ_pj) estimates tr f(H) (e.g. the effective dimension).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from softsym.analysis.lanczos import _ritz, lanczos_tridiagonal
from softsym.analysis.matvec import as_matvec, matvec_count
from softsym.progress import progress_bar


@dataclass(frozen=True)
class SpectralDensity:
    grid: np.ndarray        # [G]
    density: np.ndarray     # [G], integrates to 1 over the grid
    nodes: np.ndarray       # [P, m] Ritz values per probe
    weights: np.ndarray     # [P, m] quadrature weights per probe (each row sums to 1)
    sigma: float
    n: int                  # operator dimension
    n_matvecs: int
    seconds: float

    def per_probe(self, f) -> np.ndarray:
        """Each probe's own quadrature estimate of (1/n) tr f(H) = vᵀ f(H) v: ``[P]``, independent draws."""
        return np.sum(self.weights * f(self.nodes), axis=1)

    @staticmethod
    def _mean_se(samples: np.ndarray) -> tuple[float, float]:
        se = float(samples.std(ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("inf")
        return float(samples.mean()), se

    def trace_of(self, f) -> float:
        """Estimate of tr f(H) = Σ_i f(λ_i)."""
        return self.trace_of_with_se(f)[0]

    def trace_of_with_se(self, f) -> tuple[float, float]:
        """(estimate of tr f(H), its standard error over the probes: n · std_p / √P)."""
        mean, se = self._mean_se(self.per_probe(f))
        return self.n * mean, self.n * se

    def fraction(self, predicate) -> float:
        """Estimated fraction of eigenvalues with ``predicate(λ)`` true (a quadrature of the step function:
        resolution limited to about 1/m of the spectrum per probe)."""
        return self.fraction_with_se(predicate)[0]

    def fraction_with_se(self, predicate) -> tuple[float, float]:
        """(estimated fraction, its standard error over the probes: std_p / √P). The error is the probes'
        variance only; the quadrature's own bias (~1/m of the spectrum near a threshold) is not in it."""
        return self._mean_se(self.per_probe(lambda x: predicate(x).astype(np.float64)))


def gaussian_density(nodes: np.ndarray, weights: np.ndarray, *, grid: np.ndarray | None = None,
                     grid_size: int = 2000, sigma: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Smooth the weighted nodes into a density on a grid (padding the range by 5% on each side)."""
    lo, hi = float(nodes.min()), float(nodes.max())
    span = max(hi - lo, 1e-12)
    if grid is None:
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, grid_size)
    if sigma is None:
        sigma = span / 400
    flat_n, flat_w = nodes.reshape(-1), weights.reshape(-1) / nodes.shape[0]
    dens = np.zeros_like(grid)
    for start in range(0, len(flat_n), 256):
        d = (grid[:, None] - flat_n[None, start:start + 256]) / sigma
        dens += (np.exp(-0.5 * d * d) * flat_w[None, start:start + 256]).sum(1)
    dens /= sigma * np.sqrt(2 * np.pi)
    return grid, dens, float(sigma)


def spectral_density(op, *, n_probes: int = 8, n_steps: int = 64, seed: int = 0, grid: np.ndarray | None = None,
                     grid_size: int = 2000, sigma: float | None = None, progress: bool = False) -> SpectralDensity:
    """SLQ with ``n_probes`` seeded Rademacher probes and ``n_steps`` Lanczos steps each (full
    reorthogonalisation). ``sigma`` defaults to 1/400 of the spectral range."""
    t0, before = time.perf_counter(), matvec_count(op)
    _, n, _ = as_matvec(op)
    rng = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    for p in progress_bar(range(n_probes), desc="slq", disable=not progress, leave=False):
        v0 = (torch.randint(0, 2, (n,), generator=rng, dtype=torch.int8).to(torch.float64) * 2 - 1)
        tri = lanczos_tridiagonal(op, n_steps, v0=v0, seed=seed + 7919 * (p + 1))
        theta, S = _ritz(list(tri.alphas), list(tri.betas))
        tau = S[0, :] ** 2
        pad = n_steps - len(theta)  # a short run (invariant subspace / tiny n): pad with zero weight
        nodes.append(np.pad(theta, (0, pad), constant_values=theta[-1]))
        weights.append(np.pad(tau, (0, pad)))
    nodes_a, weights_a = np.stack(nodes), np.stack(weights)
    g, dens, sig = gaussian_density(nodes_a, weights_a, grid=grid, grid_size=grid_size, sigma=sigma)
    count = matvec_count(op) - before if hasattr(op, "n_matvecs") else n_probes * n_steps
    return SpectralDensity(g, dens, nodes_a, weights_a, sig, n, count, time.perf_counter() - t0)


def quadrature_mass(op, v: np.ndarray | torch.Tensor, predicate, *, n_steps: int = 80, seed: int = 0) -> float:
    """‖P v‖²/‖v‖² for the spectral projector P onto {λ : predicate(λ)}, by Lanczos quadrature started at v
    (the spectral measure of v is Σ_i (u_iᵀ v)² δ(λ − λ_i)/‖v‖²)."""
    tri = lanczos_tridiagonal(op, n_steps, v0=torch.as_tensor(np.asarray(v), dtype=torch.float64), seed=seed)
    theta, S = _ritz(list(tri.alphas), list(tri.betas))
    return float(np.sum(S[0, :] ** 2 * predicate(theta)))
