"""One call for the Hessian part of the complexity stage: exact or Lanczos, trace, density, and the metrics.

Metric names (the MLflow contract of docs/architecture.md) and their definitions, with λ_max = max_i |λ_i|
and ε, z from the config (``complexity.hessian.near_zero_eps``, ``complexity.hessian.eff_dim_z``):

- ``hessian_top_eig``: the largest eigenvalue; ``hessian_bottom_eig``: the smallest.
- ``hessian_trace`` ± ``hessian_trace_se``: exact (se 0) for ``method=exact``, else Hutch++/XTrace.
- ``hessian_near_zero_frac``: fraction of eigenvalues with |λ| < ε·λ_max (``hessian_n_near_zero``: count);
- ``hessian_neg_frac``: fraction with λ < −ε·λ_max (significantly negative: the three fractions
  near-zero / negative / positive partition the spectrum, and rounding noise around 0 is not "negative");
- ``hessian_eff_dim``: Σ_{λ_i > 0} λ_i / (λ_i + z) (MacKay; Maddox et al.).
- ``hessian_near_zero_frac_abs``, ``hessian_neg_frac_abs``: the same against the absolute threshold
  τ = ``complexity.hessian.near_zero_abs`` (|λ| < τ; λ < −τ), which does not move with λ_max (the relative one
  doubles when λ_max does, e.g. between penalty strengths). The absolute count ``hessian_n_near_zero_abs`` is
  the Goldstone analysis' (``goldstone/curvature.py``, threshold ``complexity.goldstone.abs_threshold``).
For ``method=lanczos`` the fractions and the effective dimension come from the SLQ density (quadrature of a
step function: resolution ~1/(probes·steps) of the spectrum), the extremes from Lanczos.

Every stochastic estimate carries ``<name>_se``, its standard error over the random probes: the trace's from
its estimator (``trace.py``); a density-derived quantity's from the spread of the probes' own quadrature
estimates (each probe v gives vᵀ f(H) v; the reported value is their mean, so se = std_p/√P). Conditional on
λ_max (the relative threshold); zero for ``method=exact``. ``hessian_top_eig_err`` / ``hessian_bottom_eig_err``:
Lanczos' error bounds on the extremes (0 for exact).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from softsym.analysis.curvature import HessianOperator
from softsym.analysis.density import SpectralDensity, gaussian_density, spectral_density
from softsym.analysis.exact import ExactHessian, exact_hessian
from softsym.analysis.lanczos import EigenPairs, LanczosResult, lanczos
from softsym.analysis.trace import TraceEstimate, estimate_trace, exact_trace

METHODS = ("auto", "exact", "lanczos")
# Exact Hessian (+ eigh) of a 4.8k-parameter PFN on 512 jets × 64 particles: ~60-120 s on one shared CPU core
# (cost ~ n²), so 4000 keeps `auto` under ~60 s.
DEFAULT_EXACT_MAX_PARAMS = 4000


@dataclass(frozen=True)
class HessianOptions:
    """What ``analyze_hessian`` computes (config group ``complexity.hessian``, plus the run's seed)."""

    method: str = "auto"               # auto | exact | lanczos; auto = exact when n <= exact_max_params
    exact_max_params: int = DEFAULT_EXACT_MAX_PARAMS
    k: int = 20                        # top-k eigenpairs (Lanczos)
    k_bottom: int = 5                  # bottom-k eigenpairs (Lanczos)
    tol: float = 1e-4                  # relative eigenvalue accuracy at which Lanczos stops
    max_iter: int | None = None        # Krylov dimension limit (None: lanczos' default)
    trace_method: str = "hutchpp"      # hutchpp | xtrace | hutchinson (lanczos; exact uses the exact trace)
    trace_matvecs: int = 99
    slq_probes: int = 8                # stochastic Lanczos quadrature for the spectral density
    slq_steps: int = 64
    density: bool = True               # compute the density (for the plot) in both modes
    near_zero_eps: float = 1e-3        # near zero: |λ| < near_zero_eps · λ_max
    near_zero_abs: float = 1e-4        # absolute variant: |λ| < near_zero_abs
    eff_dim_z: float = 1.0             # effective dimension Σ_{λ>0} λ / (λ + z)
    seed: int = 0                      # seeds every random draw
    progress: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"complexity.hessian.method={self.method!r} is unknown; expected one of {METHODS}")


@dataclass(frozen=True)
class HessianAnalysis:
    method: str                        # "exact" or "lanczos"
    n_params: int
    loss: float
    eigenvalues: np.ndarray            # exact: all, ascending; lanczos: the converged extremes, ascending
    top: EigenPairs
    bottom: EigenPairs | None
    trace: TraceEstimate
    density: SpectralDensity | None
    exact: ExactHessian | None
    lanczos: LanczosResult | None
    metrics: dict[str, float] = field(default_factory=dict)
    n_matvecs: int = 0
    seconds: float = 0.0

    @property
    def lambda_max(self) -> float:
        """max_i |λ_i| (the scale of 'near zero')."""
        vals = [abs(float(self.top.values[0]))]
        if self.bottom is not None and len(self.bottom.values):
            vals.append(abs(float(self.bottom.values[0])))
        return max(vals)


def _threshold_metrics(fraction, n: int, thr: float, suffix: str) -> dict[str, float]:
    """Near-zero and negative fractions and count at threshold ``thr``, each with its s.e.
    (``fraction(predicate) -> (value, se)``)."""
    near, near_se = fraction(lambda x: np.abs(x) < thr)
    neg, neg_se = fraction(lambda x: x < -thr)
    out = {f"hessian_near_zero_frac{suffix}": near, f"hessian_near_zero_frac{suffix}_se": near_se,
           f"hessian_neg_frac{suffix}": neg, f"hessian_neg_frac{suffix}_se": neg_se}
    if not suffix:  # the absolute count is the Goldstone analysis' (hessian_n_near_zero_abs, goldstone/curvature.py)
        out.update({"hessian_n_near_zero": near * n, "hessian_n_near_zero_se": near_se * n})
    return out


def spectrum_metrics(eigenvalues: np.ndarray, *, near_zero_eps: float = 1e-3, near_zero_abs: float = 1e-4,
                     eff_dim_z: float = 1.0, trace: TraceEstimate | None = None) -> dict[str, float]:
    """The spectrum metrics (module docstring) from a full set of eigenvalues (errors 0: nothing random)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lmax = float(np.abs(lam).max())
    trace = trace or exact_trace(lam)
    pos = lam[lam > 0]

    def fraction(predicate):
        return float(np.mean(predicate(lam))), 0.0

    out = {"hessian_top_eig": float(lam.max()), "hessian_top_eig_err": 0.0,
           "hessian_bottom_eig": float(lam.min()), "hessian_bottom_eig_err": 0.0,
           "hessian_trace": trace.value, "hessian_trace_se": trace.std_error,
           "hessian_eff_dim": float(np.sum(pos / (pos + eff_dim_z))), "hessian_eff_dim_se": 0.0}
    out.update(_threshold_metrics(fraction, len(lam), near_zero_eps * lmax, ""))
    out.update(_threshold_metrics(fraction, len(lam), near_zero_abs, "_abs"))
    return out


def density_metrics(density: SpectralDensity, lambda_max: float, *, near_zero_eps: float = 1e-3,
                    near_zero_abs: float = 1e-4, eff_dim_z: float = 1.0) -> dict[str, float]:
    """Fractions, counts and effective dimension estimated from an SLQ density, each with its probe s.e."""
    eff, eff_se = density.trace_of_with_se(lambda x: np.where(x > 0, x / (np.abs(x) + eff_dim_z), 0.0))
    out = {"hessian_eff_dim": eff, "hessian_eff_dim_se": eff_se}
    out.update(_threshold_metrics(density.fraction_with_se, density.n, near_zero_eps * lambda_max, ""))
    out.update(_threshold_metrics(density.fraction_with_se, density.n, near_zero_abs, "_abs"))
    return out


def _pairs_from_exact(ex: ExactHessian, k: int, top: bool) -> EigenPairs:
    idx = np.arange(len(ex.eigenvalues))[::-1][:k] if top else np.arange(len(ex.eigenvalues))[:k]
    zeros = np.zeros(len(idx))
    vecs = ex.eigenvectors[:, idx] if ex.eigenvectors is not None else None
    return EigenPairs(ex.eigenvalues[idx], vecs, zeros, zeros, np.ones(len(idx), dtype=bool))


def analyze_hessian(op: HessianOperator, *, options: HessianOptions | None = None,
                    **overrides) -> HessianAnalysis:
    """Spectrum of ``op``: ``exact`` (full matrix + eigh; ``auto`` when n ≤ ``exact_max_params``) or
    ``lanczos`` (top-k / bottom-k, Hutch++ trace, SLQ density). The density is computed in both modes
    (for the plot) unless ``density=False``. Every random draw is seeded by ``seed``. ``options``: a
    ``HessianOptions``; keyword ``overrides`` (its field names) replace single fields of it, or of the
    defaults when no ``options`` are given."""
    o = dataclasses.replace(options, **overrides) if options is not None else HessianOptions(**overrides)
    t0, before = time.perf_counter(), op.n_matvecs
    chosen = ("exact" if op.n <= o.exact_max_params else "lanczos") if o.method == "auto" else o.method
    dens = None
    if chosen == "exact":
        ex = exact_hessian(op, eigenvectors=True, progress=o.progress)
        trace = exact_trace(ex.eigenvalues)
        metrics = spectrum_metrics(ex.eigenvalues, near_zero_eps=o.near_zero_eps, near_zero_abs=o.near_zero_abs,
                                   eff_dim_z=o.eff_dim_z, trace=trace)
        top = _pairs_from_exact(ex, o.k, top=True)
        bottom = _pairs_from_exact(ex, o.k_bottom, top=False) if o.k_bottom > 0 else None
        if o.density:
            dens = _exact_density(ex.eigenvalues)
        result_l, eigenvalues = None, ex.eigenvalues
    else:
        ex = None
        result_l = lanczos(op, k=o.k, k_bottom=o.k_bottom, tol=o.tol, max_iter=o.max_iter, seed=o.seed,
                           progress=o.progress)
        top, bottom = result_l.top, result_l.bottom
        trace = estimate_trace(op, method=o.trace_method, n_matvecs=o.trace_matvecs, seed=o.seed + 1)
        lmax = max(abs(float(top.values[0])), abs(float(bottom.values[0])) if bottom is not None else 0.0)
        metrics = {"hessian_top_eig": float(top.values[0]), "hessian_top_eig_err": float(top.error_bounds[0]),
                   "hessian_trace": trace.value, "hessian_trace_se": trace.std_error}
        if bottom is not None:
            metrics["hessian_bottom_eig"] = float(bottom.values[0])
            metrics["hessian_bottom_eig_err"] = float(bottom.error_bounds[0])
        if o.density:
            dens = spectral_density(op, n_probes=o.slq_probes, n_steps=o.slq_steps, seed=o.seed + 2,
                                    progress=o.progress)
            metrics.update(density_metrics(dens, lmax, near_zero_eps=o.near_zero_eps, near_zero_abs=o.near_zero_abs,
                                           eff_dim_z=o.eff_dim_z))
        metrics["hessian_lanczos_converged"] = float(result_l.converged)
        parts = [top.values] + ([bottom.values] if bottom is not None else [])
        eigenvalues = np.unique(np.concatenate(parts))
    metrics["hessian_n_params"] = float(op.n)
    metrics["hessian_matvecs"] = float(op.n_matvecs - before)
    seconds = time.perf_counter() - t0
    metrics["hessian_seconds"] = seconds
    return HessianAnalysis(chosen, op.n, op.loss, eigenvalues, top, bottom, trace, dens, ex, result_l, metrics,
                           op.n_matvecs - before, seconds)


def _exact_density(eigenvalues: np.ndarray) -> SpectralDensity:
    nodes = eigenvalues[None, :]
    weights = np.full_like(nodes, 1.0 / len(eigenvalues))
    grid, dens, sigma = gaussian_density(nodes, weights)
    return SpectralDensity(grid, dens, nodes, weights, sigma, len(eigenvalues), 0, 0.0)
