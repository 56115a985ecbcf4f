"""Inference over batches: labels and class probabilities as numpy arrays."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.training.metrics import probabilities


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[JetBatch]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels [N], probabilities [N, C])`` of ``model`` (in eval mode) over ``batches``."""
    model.eval()
    labels, probs = [], []
    for batch in batches:
        logits = logits_from_p4(model, batch.p4, batch.mask, batch.scalars)
        labels.append(batch.labels.cpu().numpy())
        probs.append(probabilities(logits).cpu().numpy())
    return np.concatenate(labels), np.concatenate(probs)
