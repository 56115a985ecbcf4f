"""Curvature of the loss along the symmetry directions, in measures that cannot saturate.

- ``hessian_goldstone_curvature_ratio`` = mean_a v̂_aᵀHv̂_a / (tr H / n) over the non-trivial unit directions
  v̂_a = v_a/‖v_a‖: the curvature along the symmetry directions against that of a random unit direction,
  whose expectation is tr H / n. Every v̂_aᵀHv̂_a is an exact Hessian-vector product; the trace is the one
  the spectrum analysis estimated, and its standard error is carried over: se = |ratio| · se(tr H)/|tr H|.
  1 means "as curved as a random direction"; ≪ 1 a flat (pseudo-Goldstone) direction.
- Loss profiles L(θ + t·d) − L(θ) over a grid of t for d = v̂_a and for seeded random unit directions (the
  same norm), on the evaluation set: beyond the curvature (second order), the whole shape.
- ``near_zero_count``: eigenvalues with |λ| < τ for an absolute τ (``complexity.goldstone.abs_threshold``),
  so that runs with different λ_max (the penalty doubles it) count against the same bar, and the count gained
  against the λ = 0 run of the same seed can be set beside the number of non-trivial generators. Exact from
  the eigenvalues, else n · (SLQ mass of |λ| < τ) with the probe-to-probe standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from softsym.analysis.goldstone.directions import SymmetryDirections


def unit_directions(directions: SymmetryDirections | np.ndarray) -> np.ndarray:
    """The non-trivial, non-zero directions normalised to unit length ``[A', n]``."""
    if isinstance(directions, SymmetryDirections):
        V = directions.vectors[~directions.trivial]
    else:
        V = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    norms = np.linalg.norm(V, axis=1)
    return V[norms > 0] / norms[norms > 0, None]


@dataclass(frozen=True)
class CurvatureRatio:
    ratio: float
    ratio_se: float
    per_direction: np.ndarray  # [A'] v̂_aᵀHv̂_a
    mean_curvature: float      # tr H / n

    def metrics(self) -> dict[str, float]:
        return {"hessian_goldstone_curvature_ratio": self.ratio,
                "hessian_goldstone_curvature_ratio_se": self.ratio_se,
                "hessian_goldstone_unit_curvature": float(np.mean(self.per_direction))
                if len(self.per_direction) else float("nan")}


def curvature_ratio(op, directions: SymmetryDirections | np.ndarray, *, trace: float, trace_se: float = 0.0
                    ) -> CurvatureRatio:
    """mean_a v̂_aᵀHv̂_a / (tr H / n) for the Hessian operator ``op`` (module docstring)."""
    V = unit_directions(directions)
    per = np.array([_quadratic_form(op, v) for v in V])
    mean = trace / op.n
    if not len(per) or mean == 0:
        return CurvatureRatio(float("nan"), float("nan"), per, mean)
    ratio = float(per.mean() / mean)
    return CurvatureRatio(ratio, abs(ratio) * abs(trace_se) / abs(trace), per, mean)


def _quadratic_form(op, v: np.ndarray) -> float:
    hv = op.matvec(torch.as_tensor(v)).detach().double().cpu().numpy()
    return float(np.dot(v, hv))


@dataclass(frozen=True)
class LossProfiles:
    t: np.ndarray          # [T]
    symmetry: np.ndarray   # [A', T] L(θ + t v̂_a) − L(θ)
    random: np.ndarray     # [R, T] L(θ + t r̂_j) − L(θ)
    loss: float            # L(θ)
    generator_names: tuple[str, ...]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"t": self.t, "symmetry": self.symmetry, "random": self.random, "loss": np.array(self.loss),
                "generator_names": np.array(self.generator_names)}


class _Loss(nn.Module):
    def __init__(self, model: nn.Module, loss_fn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def _loss_at(op, wrapper: _Loss, params: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return sum(w * float(torch.func.functional_call(wrapper, params, (batch,)))
                   for w, batch in zip(op.weights, op.batches, strict=True))


def loss_profiles(op, directions: SymmetryDirections, t: np.ndarray, *, n_random: int = 8, seed: int = 0
                  ) -> LossProfiles:
    """L(θ + t·d) − L(θ) on ``op``'s model copy and evaluation set (``HessianOperator``: its ``loss_fn``,
    batches and jet weights) for the unit symmetry directions and ``n_random`` Gaussian unit directions drawn
    from ``seed``; the model is never modified (the parameters are swapped by ``functional_call``)."""
    V = unit_directions(directions)
    rng = np.random.default_rng(seed)
    R = rng.standard_normal((n_random, op.n))
    R /= np.linalg.norm(R, axis=1, keepdims=True)
    wrapper = _Loss(op.model, op.loss_fn)
    base = {f"model.{b.name}": p.detach() for b, p in zip(op.layout, op.params, strict=True)}
    loss0 = _loss_at(op, wrapper, base)

    def profile(d: np.ndarray) -> np.ndarray:
        d = torch.as_tensor(d, dtype=op.dtype, device=op.device)
        out = []
        for step in t:
            params = {k: p + float(step) * d[b.slice].view(b.shape)
                      for (k, p), b in zip(base.items(), op.layout, strict=True)}
            out.append(_loss_at(op, wrapper, params) - loss0)
        return np.array(out)

    sym = np.stack([profile(v) for v in V]) if len(V) else np.zeros((0, len(t)))
    rand = np.stack([profile(r) for r in R]) if n_random else np.zeros((0, len(t)))
    gen_names = tuple(n for n, trivial in zip(directions.generator_names, directions.trivial, strict=True)
                      if not trivial and np.any(directions.vectors[directions.generator_names.index(n)] != 0))
    return LossProfiles(np.asarray(t, dtype=np.float64), sym, rand, loss0, gen_names)


@dataclass(frozen=True)
class NearZeroCount:
    count: float
    count_se: float
    threshold: float
    method: str  # "exact" or "slq"

    def metrics(self) -> dict[str, float]:
        return {"hessian_n_near_zero_abs": self.count, "hessian_n_near_zero_abs_se": self.count_se,
                "hessian_near_zero_abs_threshold": self.threshold}


def near_zero_count(threshold: float, *, eigenvalues: np.ndarray | None = None, density=None) -> NearZeroCount:
    """Eigenvalues with |λ| < ``threshold``: exact from all ``eigenvalues``, else from an SLQ ``density``
    (``SpectralDensity``: n · mean over probes, se = n · std/√P)."""
    if eigenvalues is not None:
        return NearZeroCount(float(np.sum(np.abs(eigenvalues) < threshold)), 0.0, threshold, "exact")
    if density is None:
        raise ValueError("give eigenvalues or an SLQ density")
    per_probe = density.n * density.per_probe(lambda x: (np.abs(x) < threshold).astype(np.float64))
    se = float(per_probe.std(ddof=1) / np.sqrt(len(per_probe))) if len(per_probe) > 1 else float("inf")
    return NearZeroCount(float(per_probe.mean()), se, threshold, "slq")
