"""Classifier metrics of the top-tagging literature: AUC, accuracy, background rejection 1/ε_B at fixed ε_S."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve


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


def rejection_at(labels: np.ndarray, scores: np.ndarray, signal_efficiency: float) -> float:
    """Background rejection 1/ε_B at the working point with signal efficiency ε_S (interpolated ROC)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    eps_b = float(np.interp(signal_efficiency, tpr, fpr))
    return 1.0 / eps_b if eps_b > 0 else float("inf")


def binary_metrics(labels: np.ndarray, signal_scores: np.ndarray, prefix: str = "") -> dict[str, float]:
    """AUC, accuracy at score 0.5, 1/ε_B at ε_S = 0.3 and 0.5, for ``labels`` in {0, 1}."""
    if len(np.unique(labels)) < 2:
        raise ValueError(f"need both classes to compute AUC, got labels {np.unique(labels).tolist()}")
    return {
        f"{prefix}auc": float(roc_auc_score(labels, signal_scores)),
        f"{prefix}acc": float(np.mean((signal_scores > 0.5) == (labels == 1))),
        f"{prefix}rej30": rejection_at(labels, signal_scores, 0.3),
        f"{prefix}rej50": rejection_at(labels, signal_scores, 0.5),
    }


# Signal efficiencies of the JetClass table of the Particle Transformer paper (Qu, Li, Qian 2022).
JETCLASS_WORKING_POINTS = {"Hbb": 0.5, "Hcc": 0.5, "Hgg": 0.5, "H4q": 0.5, "Hqql": 0.99, "Zqq": 0.5,
                           "Wqq": 0.5, "Tbqq": 0.5, "Tbl": 0.995}


def classification_metrics(labels: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...],
                           prefix: str = "test_") -> dict[str, float]:
    """Metrics for binary or multi-class output; class 0 is the background (QCD).

    Two classes: the spine's binary metrics. More: overall accuracy and, per signal class c, the
    c-vs-QCD discriminant p_c / (p_c + p_QCD) on jets of those two classes — AUC and 1/ε_B at the JetClass
    working point — plus the binary metrics of 'any signal vs QCD'.
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
        out[f"{prefix}auc_{name}"] = float(roc_auc_score(truth, score))
        wp = JETCLASS_WORKING_POINTS.get(name, 0.5)
        out[f"{prefix}rej{round(wp * 100)}_{name}"] = rejection_at(truth, score, wp)
    any_signal = binary_metrics((labels != 0).astype(int), 1 - probs[:, 0], prefix)
    out.update({k: v for k, v in any_signal.items() if k != f"{prefix}acc"})
    return out
