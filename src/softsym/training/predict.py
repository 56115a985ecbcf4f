"""Inference over batches: the one loop that turns a model and jets into logits, labels and probabilities."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.training.metrics import probabilities


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Iterable[JetBatch]) -> tuple[torch.Tensor, np.ndarray]:
    """``(logits [N, O] on the CPU, labels [N])`` of ``model`` in eval mode; its mode is restored after."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    try:
        for batch in batches:
            batch = batch.to(device)
            logits.append(logits_from_p4(model, batch.p4, batch.mask, batch.scalars).cpu())
            labels.append(batch.labels.cpu().numpy())
    finally:
        model.train(was_training)
    return torch.cat(logits), np.concatenate(labels)


def predict(model: nn.Module, batches: Iterable[JetBatch]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels [N], probabilities [N, C])`` of ``model`` over ``batches``."""
    logits, labels = predict_logits(model, batches)
    return labels, probabilities(logits).numpy()
