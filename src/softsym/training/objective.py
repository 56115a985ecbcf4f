"""The training objective: task loss + λ · penalty, with the penalty skipped entirely when λ = 0."""

from __future__ import annotations

import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.training.metrics import task_loss


def penalised_objective(penalty):
    """A ``loss_fn(model, batch, training)`` for ``fit``.

    ``penalty`` is None or a callable ``penalty(model, batch) -> (logits, value)`` with a ``weight``; the
    penalty's forward pass also yields the logits, so the task loss costs no second forward. Validation
    (``training=False``) measures the task loss alone, so early stopping compares like with like.
    """
    active = penalty is not None and penalty.weight > 0

    def loss_fn(model: nn.Module, batch: JetBatch, training: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if training and active:
            logits, value = penalty(model, batch)
            task = task_loss(logits, batch.labels)
            return task + penalty.weight * value, {"task": task.detach(), "penalty": value.detach()}
        logits = logits_from_p4(model, batch.p4, batch.mask, batch.scalars)
        task = task_loss(logits, batch.labels)
        return task, {"task": task.detach()}

    return loss_fn
