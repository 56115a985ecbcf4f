"""Per-jet input gradients of a model's logits: ‖∇_x f(x)‖²_F with x the jet's input features.

Here x is a jet's input feature array ``[P, F]`` (``compute_features`` of its 4-vectors, real particles only;
for a model on 4-vector inputs, ``model.inputs=p4|p4_jet``, the array its ``input_map`` gives)
and f its logits ``[O]``: ‖∇_x f‖²_F = Σ_o Σ_{real p} Σ_f (∂f_o/∂x_pf)². Models read features (and ``p4`` for
the few that use pairwise 4-vector inputs: those paths are held fixed, the gradient is w.r.t. the features).
Jets do not interact in eval mode, so one backward pass of Σ_b f_o(x_b) per output gives every jet's gradient
at once: the whole batch is vectorised, O backward passes (one for the usual single-logit tagger). Both the
geometric-complexity measure (``softsym.analysis.geometric``) and its regulariser
(``softsym.penalties.geometric``) are built on it.
"""

from __future__ import annotations

import torch
from torch import nn

from softsym.physics import compute_features


def jet_input_gradient_norms(model: nn.Module, batch, *, create_graph: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits ``[B, O]``, ‖∇_x f(x_b)‖²_F per jet ``[B]``) for a ``JetBatch``; with ``create_graph`` the norms
    are differentiable w.r.t. the parameters (the GC regulariser)."""
    input_map = getattr(getattr(model, "module", model), "input_map", None)  # DDP wraps the model
    captured: dict[str, torch.Tensor] = {}

    def as_leaf(module, args, output):  # x = the 4-vector input tensor itself, for models that read one
        captured["x"] = output.detach().requires_grad_(True)
        return captured["x"]

    handle = input_map.register_forward_hook(as_leaf) if input_map is not None and input_map.reads_p4 else None
    try:
        with torch.enable_grad():
            features = compute_features(batch.p4, batch.mask, batch.scalars).detach().requires_grad_(True)
            logits = model(features, batch.p4, batch.mask)
    finally:
        if handle is not None:
            handle.remove()
    x = captured.get("x", features)
    with torch.enable_grad():
        real = batch.mask.unsqueeze(-1).to(x.dtype)
        total = x.new_zeros(x.shape[0])
        n_out = logits.shape[-1]
        for o in range(n_out):
            (grad,) = torch.autograd.grad(logits[:, o].sum(), x, create_graph=create_graph,
                                          retain_graph=create_graph or o < n_out - 1)
            total = total + (grad * grad * real).sum(dim=(1, 2))
    return logits, total
