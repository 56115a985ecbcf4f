"""Stochastic trace estimators with standard errors: Hutchinson, Hutch++ and XTrace.

- Hutchinson: tr(H) ≈ mean_i g_iᵀ H g_i, g Rademacher; error O(‖H‖_F/√m).
- Hutch++ (Meyer, Musco, Musco, Woodruff 2021): m/3 products sketch Q = orth(H S), tr(QᵀHQ) exactly
  (m/3 products), Hutchinson on the deflated rest (I−QQᵀ)H(I−QQᵀ) with the last m/3; error O(1/m) for
  spectra dominated by a few large eigenvalues — a Hessian with an outlier above a bulk is such a case.
- XTrace (Epperly, Tropp, Webber 2024): m/2 test vectors used both for the sketch and, leave-one-out,
  for the Hutchinson correction; the m/2 exchangeable estimates give the standard error (the basic
  exchangeable form, without the paper's extra normalisation step).

All draws come from a ``torch.Generator`` seeded with ``seed``, so every estimate is reproducible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from softsym.analysis.matvec import as_matvec, matvec_count

TRACE_METHODS = ("hutchpp", "xtrace", "hutchinson")


@dataclass(frozen=True)
class TraceEstimate:
    value: float
    std_error: float
    n_matvecs: int
    method: str
    seconds: float = 0.0


def _rademacher(n: int, k: int, rng: torch.Generator, device) -> torch.Tensor:
    return (torch.randint(0, 2, (n, k), generator=rng, dtype=torch.int8).to(torch.float64) * 2 - 1).to(device)


def _apply(matvec, X: torch.Tensor) -> torch.Tensor:
    return torch.stack([matvec(X[:, j]) for j in range(X.shape[1])], dim=1)


def _count(op, before: int, fallback: int) -> int:
    return matvec_count(op) - before if hasattr(op, "n_matvecs") else fallback


def hutchinson_trace(op, *, n_matvecs: int = 100, seed: int = 0) -> TraceEstimate:
    t0, before = time.perf_counter(), matvec_count(op)
    matvec, n, device = as_matvec(op)
    G = _rademacher(n, n_matvecs, torch.Generator().manual_seed(seed), device)
    samples = (G * _apply(matvec, G)).sum(0).cpu().numpy()
    se = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("inf")
    return TraceEstimate(float(samples.mean()), se, _count(op, before, n_matvecs), "hutchinson",
                         time.perf_counter() - t0)


def hutchpp_trace(op, *, n_matvecs: int = 99, seed: int = 0) -> TraceEstimate:
    """Hutch++ with ``n_matvecs`` products (a multiple of 3 is used: m/3 sketch, m/3 exact part, m/3
    Hutchinson). The standard error is that of the Hutchinson part (the exact part has none)."""
    t0, before = time.perf_counter(), matvec_count(op)
    matvec, n, device = as_matvec(op)
    if n <= n_matvecs:  # cheaper to be exact
        value = float(sum(float(matvec(torch.eye(n, dtype=torch.float64, device=device)[:, j])[j])
                          for j in range(n)))
        return TraceEstimate(value, 0.0, _count(op, before, n), "exact", time.perf_counter() - t0)
    k = max(n_matvecs // 3, 1)
    rng = torch.Generator().manual_seed(seed)
    S = _rademacher(n, k, rng, device)
    G = _rademacher(n, k, rng, device)
    Q, _ = torch.linalg.qr(_apply(matvec, S))
    t_low = float((Q * _apply(matvec, Q)).sum())
    PG = G - Q @ (Q.T @ G)
    samples = (PG * _apply(matvec, PG)).sum(0).cpu().numpy()
    value = t_low + float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(k)) if k > 1 else float("inf")
    return TraceEstimate(value, se, _count(op, before, 3 * k), "hutchpp", time.perf_counter() - t0)


def xtrace(op, *, n_matvecs: int = 100, seed: int = 0) -> TraceEstimate:
    """XTrace with ``n_matvecs`` products: m = n_matvecs/2 Rademacher test vectors w_i, Y = H W, Q = orth(Y),
    Z = H Q. Estimate i uses the basis Q_i of all test vectors but w_i (Q_i Q_iᵀ = Q(I − s_i s_iᵀ)Qᵀ, s_i the
    normalised i-th column of R⁻ᵀ) exactly and w_i for Hutchinson on the complement:
    t_i = tr(Q_iᵀ H Q_i) + w_iᵀ (I − Q_iQ_iᵀ) H (I − Q_iQ_iᵀ) w_i. The t_i are exchangeable and unbiased;
    their mean is the estimate and their spread the standard error."""
    t0, before = time.perf_counter(), matvec_count(op)
    matvec, n, device = as_matvec(op)
    m = max(n_matvecs // 2, 2)
    W = _rademacher(n, m, torch.Generator().manual_seed(seed), device)
    Y = _apply(matvec, W)
    Q, R = torch.linalg.qr(Y)
    Z = _apply(matvec, Q)
    S = torch.linalg.inv(R).T
    S = S / S.norm(dim=0, keepdim=True)
    QtZ = Q.T @ Z

    def deflate(X):  # column i: (I − s_i s_iᵀ) x_i
        return X - S * (S * X).sum(0, keepdim=True)

    APW = Y - Z @ deflate(Q.T @ W)
    PAPW = APW - Q @ deflate(Q.T @ APW)
    ests = torch.trace(QtZ) - (S * (QtZ @ S)).sum(0) + (W * PAPW).sum(0)
    ests = ests.cpu().numpy()
    return TraceEstimate(float(ests.mean()), float(ests.std(ddof=1) / math.sqrt(m)), _count(op, before, 2 * m),
                         "xtrace", time.perf_counter() - t0)


def estimate_trace(op, *, method: str = "hutchpp", n_matvecs: int = 99, seed: int = 0) -> TraceEstimate:
    if method == "hutchpp":
        return hutchpp_trace(op, n_matvecs=n_matvecs, seed=seed)
    if method == "xtrace":
        return xtrace(op, n_matvecs=n_matvecs, seed=seed)
    if method == "hutchinson":
        return hutchinson_trace(op, n_matvecs=n_matvecs, seed=seed)
    raise ValueError(f"trace method {method!r} is unknown; expected one of {TRACE_METHODS}")


def exact_trace(eigenvalues: np.ndarray) -> TraceEstimate:
    return TraceEstimate(float(np.sum(eigenvalues)), 0.0, 0, "exact")
