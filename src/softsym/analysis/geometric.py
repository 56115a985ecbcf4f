"""Geometric complexity (Dherin, Munn, Rosca, Barrett 2022): GC(f, D) = (1/|D|) Σ_x ‖∇_x f(x)‖²_F.

x is a jet's input feature array and f its logits; the per-jet norms come from
``softsym.models.gradients.jet_input_gradient_norms`` (one vectorised backward pass per output).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from softsym.models.gradients import jet_input_gradient_norms


def geometric_complexity(model: nn.Module, batches: Iterable) -> float:
    """Mean over the jets of ``batches`` of ‖∇_x f(x)‖²_F (model in eval mode; its mode is restored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            _, norms = jet_input_gradient_norms(model, batch)
            total += float(norms.sum())
            count += int(norms.shape[0])
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("geometric_complexity needs at least one jet")
    return total / count
