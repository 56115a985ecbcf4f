"""A trained model on the named evaluation sets (``data.eval_sets``): the classification metrics of each set
under ``<prefix><name>_`` (AUC, 1/ε_B at ε_S = 0.3 and 0.5, each with its error) and the gap to a reference
AUC on the test split, ``<prefix><name>_gap`` = reference AUC − set AUC, with ``_gap_se`` = the two DeLong
errors in quadrature (the sets share no jet with the test split, so the two AUCs are independent)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from torch import nn

from softsym.data.jets import JetArrays
from softsym.data.loaders import InMemoryLoader
from softsym.training.metrics import classification_metrics
from softsym.training.predict import predict


def gap_metrics(metrics: Mapping[str, float], set_prefix: str, reference_auc: float,
                reference_auc_se: float | None) -> dict[str, float]:
    """``<set_prefix>gap`` (reference − set AUC) and its error, from a set's metrics."""
    out = {f"{set_prefix}gap": reference_auc - metrics[f"{set_prefix}auc"]}
    if reference_auc_se is not None and f"{set_prefix}auc_se" in metrics:
        out[f"{set_prefix}gap_se"] = math.hypot(reference_auc_se, metrics[f"{set_prefix}auc_se"])
    return out


def evaluate_eval_sets(model: nn.Module, eval_sets: Mapping[str, JetArrays], *, class_names: tuple[str, ...],
                       batch_size: int, device="cpu", prefix: str = "eval_", reference_auc: float | None = None,
                       reference_auc_se: float | None = None,
                       ) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(metrics of every set, ``{name: (labels, probabilities)}``); each set is used whole."""
    metrics: dict[str, float] = {}
    predictions = {}
    for name, arrays in eval_sets.items():
        labels, probs = predict(model, InMemoryLoader(arrays, batch_size=batch_size, device=device))
        set_prefix = f"{prefix}{name}_"
        m = classification_metrics(labels, probs, class_names, prefix=set_prefix)
        if reference_auc is not None:
            m.update(gap_metrics(m, set_prefix, reference_auc, reference_auc_se))
        metrics.update(m)
        predictions[name] = (labels, probs)
    return metrics, predictions
