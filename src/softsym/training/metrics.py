"""Classifier metrics of the top-tagging literature: AUC, accuracy, background rejection 1/ε_B at fixed ε_S."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_curve


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE on the signal logit for two classes (``[B, 1]`` logits), cross-entropy otherwise."""
    if logits.shape[-1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype))
    return torch.nn.functional.cross_entropy(logits, labels)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``[B, C]`` (C = 2 for a single signal logit)."""
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V10 ``[K, m]``, V01 ``[K, n]``) of the score vectors ``scores [K, N]`` (midranks, ties count ½)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    m, n = int(labels.sum()), int((~labels).sum())
    if m == 0 or n == 0:
        raise ValueError(f"need both classes to compute AUC, got {m} signal and {n} background jets")
    v10, v01 = np.empty((len(scores), m)), np.empty((len(scores), n))
    for k, s in enumerate(scores):
        pos, neg = s[labels], s[~labels]
        ranks = rankdata(np.concatenate([pos, neg]))
        v10[k] = (ranks[:m] - rankdata(pos)) / n
        v01[k] = 1.0 - (ranks[m:] - rankdata(neg)) / m
    return v10, v01


def delong_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong standard error (DeLong, DeLong, Clarke-Pearson 1988), in O(n log n) by midranks
    (Sun, Xu 2014): with m signal and n background jets,

        V10_i = (R_i − R⁺_i) / n     (R: midrank among all jets, R⁺: among signal jets)
        V01_j = 1 − (R_j − R⁻_j) / m (R⁻: among background jets)
        AUC = mean V10,  Var = s²(V10)/m + s²(V01)/n   (s²: sample variance; ties count one half)."""
    v10, v01 = delong_components(labels, scores)
    v10, v01 = v10[0], v01[0]
    m, n = len(v10), len(v01)
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    return float(v10.mean()), float(np.sqrt(var))


@dataclass(frozen=True)
class Rejection:
    """1/ε_B at a signal efficiency, its binomial error and the background jets passing the cut.

    ε_B is estimated from N background jets, σ(ε_B) = sqrt(ε_B (1 − ε_B) / N), so
    σ(1/ε_B) = σ(ε_B) / ε_B² = (1/ε_B) · sqrt((1 − ε_B) / k) with k = ε_B · N the jets passing; the
    threshold's own fluctuation (from the signal jets) is not included. No background jet passing: inf ± inf."""
    value: float
    se: float
    n_pass: int


def rejection_with_error(labels: np.ndarray, scores: np.ndarray, signal_efficiency: float) -> Rejection:
    fpr, tpr, _ = roc_curve(labels, scores)
    eps_b = float(np.interp(signal_efficiency, tpr, fpr))
    n_background = int(np.sum(np.asarray(labels) == 0))
    passing = eps_b * n_background
    if eps_b <= 0:
        return Rejection(float("inf"), float("inf"), 0)
    return Rejection(1.0 / eps_b, float(np.sqrt((1.0 - eps_b) / passing) / eps_b), int(round(passing)))


def _rejection_metrics(labels: np.ndarray, scores: np.ndarray, signal_efficiency: float,
                       name: str) -> dict[str, float]:
    rej = rejection_with_error(labels, scores, signal_efficiency)
    return {name: rej.value, f"{name}_se": rej.se, f"{name}_n_bkg": float(rej.n_pass)}


def binary_metrics(labels: np.ndarray, signal_scores: np.ndarray, prefix: str = "") -> dict[str, float]:
    """AUC (with its DeLong s.e. ``auc_se``), accuracy at score 0.5, 1/ε_B at ε_S = 0.3 and 0.5 (with their
    binomial errors ``rej30_se``, ``rej50_se`` and the background jets passing, ``rej30_n_bkg``,
    ``rej50_n_bkg``), for ``labels`` in {0, 1}."""
    if len(np.unique(labels)) < 2:
        raise ValueError(f"need both classes to compute AUC, got labels {np.unique(labels).tolist()}")
    auc, auc_se = delong_auc(labels, signal_scores)  # the midrank AUC is sklearn's (tests/test_report_statistics.py)
    return {
        f"{prefix}auc": auc,
        f"{prefix}auc_se": auc_se,
        f"{prefix}acc": float(np.mean((signal_scores > 0.5) == (labels == 1))),
        **_rejection_metrics(labels, signal_scores, 0.3, f"{prefix}rej30"),
        **_rejection_metrics(labels, signal_scores, 0.5, f"{prefix}rej50"),
    }


# Signal efficiencies of the JetClass table of the Particle Transformer paper (Qu, Li, Qian 2022).
JETCLASS_WORKING_POINTS = {"Hbb": 0.5, "Hcc": 0.5, "Hgg": 0.5, "H4q": 0.5, "Hqql": 0.99, "Zqq": 0.5,
                           "Wqq": 0.5, "Tbqq": 0.5, "Tbl": 0.995}


def classification_metrics(labels: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...],
                           prefix: str = "test_") -> dict[str, float]:
    """Metrics for binary or multi-class output; class 0 is the background (QCD).

    Two classes: the binary metrics. More: overall accuracy and, per signal class c, the
    c-vs-QCD discriminant p_c / (p_c + p_QCD) on jets of those two classes — AUC and 1/ε_B at the JetClass
    working point, each with its error as in ``binary_metrics`` — plus the binary metrics of 'any signal vs QCD'.
    """
    if probs.shape[1] == 2:
        return binary_metrics((labels == 1).astype(int), probs[:, 1], prefix)
    out = {f"{prefix}acc": float(np.mean(probs.argmax(1) == labels))}
    background = labels == 0
    for c, name in enumerate(class_names[1:], start=1):
        sel = background | (labels == c)
        score = probs[sel, c] / np.clip(probs[sel, c] + probs[sel, 0], 1e-12, None)
        truth = (labels[sel] == c).astype(int)
        if len(np.unique(truth)) < 2:
            continue
        out[f"{prefix}auc_{name}"], out[f"{prefix}auc_{name}_se"] = delong_auc(truth, score)
        wp = JETCLASS_WORKING_POINTS.get(name, 0.5)
        out.update(_rejection_metrics(truth, score, wp, f"{prefix}rej{round(wp * 100)}_{name}"))
    any_signal = binary_metrics((labels != 0).astype(int), 1 - probs[:, 0], prefix)
    out.update({k: v for k, v in any_signal.items() if k != f"{prefix}acc"})
    return out
