"""The whole pseudo-Goldstone analysis of one trained model, in one call (what the complexity stage runs).

From the Hessian operator and its spectrum analysis: the symmetry directions (``directions.py``), their check at
the output (``checks.py``), the overlap with the near-zero eigenspace, the curvature ratio, the loss
profiles and the absolute near-zero count (``curvature.py``), and the structural null space
(``null_space.py``), reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softsym.analysis.goldstone.checks import DirectionCheck, direction_error
from softsym.analysis.goldstone.curvature import (
    CurvatureRatio,
    LossProfiles,
    NearZeroCount,
    curvature_ratio,
    loss_profiles,
    near_zero_count,
)
from softsym.analysis.goldstone.directions import (
    GoldstoneOverlap,
    SymmetryDirections,
    goldstone_overlap,
    symmetry_directions,
)
from softsym.analysis.goldstone.null_space import StructuralNullSpace, structural_null_space


@dataclass(frozen=True)
class GoldstoneOptions:
    """``complexity.goldstone`` (the symmetry resolved, the run's seed added)."""

    symmetry: str
    layer: str | None = None
    quadrature_steps: int = 80
    abs_threshold: float = 1e-4
    profile_t_max: float = 1.0
    profile_points: int = 21
    profile_random: int = 8
    near_zero_eps: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class GoldstoneAnalysis:
    directions: SymmetryDirections
    check: DirectionCheck
    overlap: GoldstoneOverlap
    curvature: CurvatureRatio
    profiles: LossProfiles
    near_zero: NearZeroCount
    structure: StructuralNullSpace

    @property
    def n_generators(self) -> int:
        """Non-trivial generators: directions that move the first layer."""
        return int(np.sum(~self.directions.trivial & np.any(self.directions.vectors != 0, axis=1)))

    def metrics(self) -> dict[str, float]:
        out = {**self.overlap.metrics(), **self.check.metrics(), **self.curvature.metrics(),
               **self.near_zero.metrics(), **self.structure.metrics()}
        out["goldstone_n_generators"] = float(self.n_generators)
        return out


def analyze_goldstone(op, hess, eval_batches, options: GoldstoneOptions) -> GoldstoneAnalysis:
    """Every Goldstone measure for the Hessian operator ``op`` (``HessianOperator``) and its ``hess``
    (``analyze_hessian``), on the same evaluation set ``eval_batches``."""
    model = op.model
    directions = symmetry_directions(model, eval_batches, options.symmetry, layer=options.layer,
                                     param_names=op.names)
    check = direction_error(model, eval_batches, directions, options.symmetry)
    if hess.exact is not None:
        overlap = goldstone_overlap(directions, eigenvalues=hess.exact.eigenvalues,
                                    eigenvectors=hess.exact.eigenvectors, near_zero_eps=options.near_zero_eps)
        near_zero = near_zero_count(options.abs_threshold, eigenvalues=hess.exact.eigenvalues)
    else:
        overlap = goldstone_overlap(directions, op=op, lambda_max=hess.lambda_max,
                                    near_zero_eps=options.near_zero_eps,
                                    near_zero_frac=hess.metrics.get("hessian_near_zero_frac"),
                                    n_steps=options.quadrature_steps, seed=options.seed)
        near_zero = near_zero_count(options.abs_threshold, density=hess.density)
    curvature = curvature_ratio(op, directions, trace=hess.metrics["hessian_trace"],
                                trace_se=hess.metrics.get("hessian_trace_se", 0.0))
    t = np.linspace(-options.profile_t_max, options.profile_t_max, options.profile_points)
    profiles = loss_profiles(op, directions, t, n_random=options.profile_random, seed=options.seed)
    structure = structural_null_space(model, eval_batches, seed=options.seed)
    return GoldstoneAnalysis(directions, check, overlap, curvature, profiles, near_zero, structure)
