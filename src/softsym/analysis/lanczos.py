"""Lanczos with full reorthogonalisation for extreme eigenpairs, with a residual-based stop.

The Krylov basis is kept in float64 and every new vector is orthogonalised twice against all previous ones
(classical Gram-Schmidt, twice), so there are no ghost eigenvalues and the Ritz residual estimate
r_i = β_m |s_{m,i}| is the true residual ‖H y_i − θ_i y_i‖ up to rounding. After each step the Ritz values
of the tridiagonal matrix are computed (cheap: m ≲ a few hundred) and the run stops when every wanted
Ritz value has an error bound below ``max(tol·|θ_i|, atol)``, where the bound is min(r_i, r_i²/gap_i)
(Parlett; gap_i = distance to the nearest other Ritz value less that value's residual, so an unconverged
neighbour cannot make the bound optimistic). ``tol`` is therefore a relative accuracy of the eigenvalues,
not of the vectors; the vectors' angles are bounded by r_i/gap_i.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from softsym.analysis.matvec import as_matvec, matvec_count
from softsym.progress import progress_bar


@dataclass(frozen=True)
class EigenPairs:
    """Extreme eigenpairs, ordered from the extreme inwards (top: descending, bottom: ascending)."""

    values: np.ndarray
    vectors: np.ndarray | None   # [n, k] float64, unit columns
    residuals: np.ndarray        # ‖H y − θ y‖ (Ritz estimate)
    error_bounds: np.ndarray     # bound on |θ − λ|
    converged: np.ndarray        # bool per pair


@dataclass(frozen=True)
class LanczosResult:
    top: EigenPairs
    bottom: EigenPairs | None
    converged: bool              # every wanted pair converged
    n_iter: int
    n_matvecs: int
    seconds: float
    ritz_values: np.ndarray      # all Ritz values of the final tridiagonal matrix (ascending)


@dataclass(frozen=True)
class Tridiagonal:
    """Output of a Lanczos run: T's diagonal/off-diagonal, the basis, and the last β."""

    alphas: np.ndarray
    betas: np.ndarray
    basis: torch.Tensor          # [m, n] float64
    last_beta: float


def _orthogonalise(w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    for _ in range(2):
        w = w - V.T @ (V @ w)
    return w


def _ritz(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(alphas)
    if len(a) == 1:
        return a.copy(), np.ones((1, 1))
    return eigh_tridiagonal(a, np.asarray(betas[: len(a) - 1]))


def _bounds(theta: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """min(r, r²/gap) with gap_i = min_{j≠i} (|θ_i − θ_j| − r_j), clipped at 0."""
    if len(theta) == 1:
        return residuals.copy()
    diff = np.abs(theta[:, None] - theta[None, :]) - residuals[None, :]
    np.fill_diagonal(diff, np.inf)
    gap = np.clip(diff.min(axis=1), 0.0, None)
    quad = np.where(gap > residuals, residuals ** 2 / np.maximum(gap, 1e-300), residuals)
    return np.minimum(residuals, quad)


class _Krylov:
    """Growing float64 basis with full reorthogonalisation; restarts with a random orthogonal vector on
    breakdown (an invariant subspace was found), so more Ritz values can still be wanted."""

    def __init__(self, matvec, n: int, device, v0: torch.Tensor, seed: int) -> None:
        self.matvec, self.n, self.device = matvec, n, device
        self.rng = torch.Generator().manual_seed(seed + 1)
        self.V = torch.empty(min(n, 64), n, dtype=torch.float64, device=device)
        self.m = 0
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self._append(v0 / v0.norm())
        self.w: torch.Tensor | None = None

    def _append(self, v: torch.Tensor) -> None:
        if self.m == self.V.shape[0]:
            grow = torch.empty(min(self.n, 2 * self.V.shape[0]), self.n, dtype=torch.float64, device=self.device)
            grow[: self.m] = self.V
            self.V = grow
        self.V[self.m] = v
        self.m += 1

    def step(self) -> float:
        """One Lanczos step; returns β (the norm of the next residual vector)."""
        j = self.m - 1
        v = self.V[j]
        w = self.matvec(v).to(torch.float64)
        alpha = float(v @ w)
        w = w - alpha * v
        if j > 0 and self.betas:
            w = w - self.betas[j - 1] * self.V[j - 1]
        w = _orthogonalise(w, self.V[: self.m])
        beta = float(w.norm())
        self.alphas.append(alpha)
        self.w = w
        return beta

    def extend(self, beta: float, scale: float) -> bool:
        """Append the next basis vector; False when the space is exhausted."""
        if self.m >= self.n:
            return False
        if beta > 1e-10 * max(scale, 1e-300):
            self.betas.append(beta)
            self._append(self.w / beta)
            return True
        for _ in range(3):  # breakdown: continue with a fresh direction, T becomes block diagonal
            r = torch.randn(self.n, generator=self.rng, dtype=torch.float64).to(self.device)
            r = _orthogonalise(r, self.V[: self.m])
            if float(r.norm()) > 1e-8:
                self.betas.append(0.0)
                self._append(r / r.norm())
                return True
        return False


def lanczos_tridiagonal(op, n_steps: int, *, v0: torch.Tensor | None = None, seed: int = 0) -> Tridiagonal:
    """``n_steps`` Lanczos steps from ``v0`` (default: a seeded Gaussian vector); for quadrature (SLQ)."""
    matvec, n, device = as_matvec(op)
    if v0 is None:
        v0 = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v0 = torch.as_tensor(v0, dtype=torch.float64).to(device).reshape(-1)
    kry = _Krylov(matvec, n, device, v0, seed)
    beta = 0.0
    for step in range(min(n_steps, n)):
        beta = kry.step()
        if step == min(n_steps, n) - 1:
            break
        scale = max(abs(a) for a in kry.alphas)
        if not kry.extend(beta, scale):
            break
    m = len(kry.alphas)
    return Tridiagonal(np.asarray(kry.alphas), np.asarray(kry.betas[: m - 1]), kry.V[:m], beta)


def _rounding_level(op) -> float:
    """Relative rounding level of the operator's products: 1e-6 for float32 (Hessian-vector products sum
    many terms), 1e-12 for float64."""
    dtype = getattr(op, "dtype", torch.float64)
    return 1e-6 if dtype in (torch.float32, np.float32, torch.float16, torch.bfloat16) else 1e-12


def lanczos(op, *, k: int = 20, k_bottom: int = 0, tol: float = 1e-4, atol: float | None = None,
            max_iter: int | None = None, seed: int = 0, v0: torch.Tensor | None = None,
            return_vectors: bool = True, progress: bool = False) -> LanczosResult:
    """Top-``k`` (largest algebraic) and bottom-``k_bottom`` (smallest) eigenpairs of a symmetric operator.

    ``tol``: relative eigenvalue accuracy to stop at; ``atol``: absolute floor (default: the rounding level
    of the products times max|θ| — 1e-6 for float32, 1e-12 for float64 — so near-zero eigenvalues can
    converge).
    ``max_iter``: Krylov dimension limit (default min(n, 10·(k + k_bottom) + 50)).
    """
    t0 = time.perf_counter()
    matvec, n, device = as_matvec(op)
    k, k_bottom = min(k, n), min(k_bottom, n)
    if k < 1 and k_bottom < 1:
        raise ValueError("ask for at least one eigenpair (k or k_bottom >= 1)")
    want = k + k_bottom
    max_iter = min(n, max_iter if max_iter is not None else 10 * want + 50)
    count0 = matvec_count(op)
    if v0 is None:
        v0 = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v0 = torch.as_tensor(v0, dtype=torch.float64).to(device).reshape(-1)
    kry = _Krylov(matvec, n, device, v0, seed)
    noise = _rounding_level(op)

    theta = S = residuals = bounds = None
    bar = progress_bar(total=max_iter, desc="lanczos", disable=not progress, leave=False)
    while True:
        beta = kry.step()
        bar.update(1)
        m = len(kry.alphas)
        theta, S = _ritz(kry.alphas, kry.betas)
        residuals = beta * np.abs(S[-1, :])
        bounds = _bounds(theta, residuals)
        scale = float(np.abs(theta).max())
        floor = atol if atol is not None else noise * scale
        top_idx = np.argsort(-theta)[: min(k, m)]
        bot_idx = np.argsort(theta)[: min(k_bottom, m)]
        wanted = np.concatenate([top_idx, bot_idx])
        ok = bounds[wanted] <= np.maximum(tol * np.abs(theta[wanted]), floor)
        bar.set_postfix(unconverged=int((~ok).sum()))
        exhausted = m >= n
        if (m >= min(want, n) and ok.all()) or exhausted or m >= max_iter:
            break
        if not kry.extend(beta, scale):
            break
    bar.close()
    floor = atol if atol is not None else noise * float(np.abs(theta).max())

    def pairs(idx: np.ndarray) -> EigenPairs:
        vecs = None
        if return_vectors and len(idx):
            vecs = (kry.V[: len(theta)].T @ torch.from_numpy(S[:, idx]).to(device)).cpu().numpy()
        conv = bounds[idx] <= np.maximum(tol * np.abs(theta[idx]), floor)
        return EigenPairs(theta[idx].copy(), vecs, residuals[idx].copy(), bounds[idx].copy(), conv | exhausted)

    top = pairs(top_idx)
    bottom = pairs(bot_idx) if k_bottom > 0 else None
    all_conv = bool(top.converged.all() and (bottom is None or bottom.converged.all()))
    n_matvecs = matvec_count(op) - count0 if hasattr(op, "n_matvecs") else len(theta)
    return LanczosResult(top, bottom, all_conv, len(theta), n_matvecs, time.perf_counter() - t0, np.sort(theta))
