"""Geometric complexity (Dherin, Munn, Rosca, Barrett 2022): GC(f, D) = (1/|D|) Σ_x ‖∇_x f(x)‖²_F.

Here x is a jet's input feature array ``[P, F]`` (``compute_features`` of its 4-vectors, real particles only)
and f its logits ``[O]``: ‖∇_x f‖²_F = Σ_o Σ_{real p} Σ_f (∂f_o/∂x_pf)². Models read features (and ``p4`` for
the few that use pairwise 4-vector inputs: those paths are held fixed, GC is w.r.t. the features). Jets do
not interact in eval mode, so one backward pass of Σ_b f_o(x_b) per output gives every jet's gradient at
once: the whole batch is vectorised, O backward passes (one for the usual single-logit tagger).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from softsym.physics import compute_features


def jet_input_gradient_norms(model: nn.Module, batch, *, create_graph: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits ``[B, O]``, ‖∇_x f(x_b)‖²_F per jet ``[B]``) for a ``JetBatch``; with ``create_graph`` the norms
    are differentiable w.r.t. the parameters (the GC regulariser)."""
    with torch.enable_grad():
        features = compute_features(batch.p4, batch.mask, batch.scalars).detach().requires_grad_(True)
        logits = model(features, batch.p4, batch.mask)
        real = batch.mask.unsqueeze(-1).to(features.dtype)
        total = features.new_zeros(features.shape[0])
        n_out = logits.shape[-1]
        for o in range(n_out):
            (grad,) = torch.autograd.grad(logits[:, o].sum(), features, create_graph=create_graph,
                                          retain_graph=create_graph or o < n_out - 1)
            total = total + (grad * grad * real).sum(dim=(1, 2))
    return logits, total


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
