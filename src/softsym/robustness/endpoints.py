"""Summary endpoints of robustness curves, with errors: the AUC lost under a perturbation, and the mean of
those losses over a class of perturbations (those outside the penalised symmetry's group: the primary
robustness endpoint).

Every AUC of a scan is measured on the same test jets, so they are correlated. A linear combination
c = Σ_k w_k AUC_k (a loss: clean AUC − mean perturbed AUC; a mean of losses) gets its standard error from
the DeLong covariance of the AUCs (DeLong, DeLong, Clarke-Pearson 1988): with the structural components
V10_k (per signal jet) and V01_k (per background jet) of each score vector,
    Cov(AUC_k, AUC_l) = S10_kl / m + S01_kl / n,    Var(c) = wᵀ S w.
Randomness of a perturbation (a smearing) is drawn per jet, so jets stay independent and it is included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from softsym.training.metrics import delong_components


def auc_contrast(labels: np.ndarray, scores: Sequence[np.ndarray], weights: Sequence[float]) -> tuple[float, float]:
    """(Σ_k w_k AUC_k, its DeLong standard error) for score vectors on the same jets."""
    w = np.asarray(weights, dtype=float)
    v10, v01 = delong_components(labels, np.stack([np.asarray(s, dtype=float) for s in scores]))
    value = float(w @ v10.mean(1))
    m, n = v10.shape[1], v01.shape[1]
    var = 0.0
    if m > 1:
        var += float(w @ np.atleast_2d(np.cov(v10)) @ w) / m
    if n > 1:
        var += float(w @ np.atleast_2d(np.cov(v01)) @ w) / n
    return value, float(np.sqrt(max(var, 0.0)))


def auc_loss(labels: np.ndarray, clean: np.ndarray, perturbed: Sequence[np.ndarray]) -> tuple[float, float]:
    """Clean AUC − mean AUC over the perturbed score vectors (one per non-zero strength), ± its error."""
    k = len(perturbed)
    return auc_contrast(labels, [clean, *perturbed], [1.0] + [-1.0 / k] * k)


def mean_auc_loss(labels: np.ndarray, clean: np.ndarray,
                  curves: Sequence[Sequence[np.ndarray]]) -> tuple[float, float]:
    """The mean of ``auc_loss`` over several perturbations (``curves``: each the perturbed score vectors of
    one perturbation's non-zero strengths), ± its error."""
    scores, weights = [clean], [1.0]
    for curve in curves:
        scores += list(curve)
        weights += [-1.0 / (len(curves) * len(curve))] * len(curve)
    return auc_contrast(labels, scores, weights)
