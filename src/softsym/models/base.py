"""The contract every jet model follows, and the one place features are computed from 4-vectors.

A model is an ``nn.Module`` whose ``forward(features, p4, mask)`` maps
``features [B, P, F]`` (``softsym.physics.compute_features``), ``p4 [B, P, 4]`` (E, px, py, pz) and
``mask [B, P]`` (bool) to logits ``[B, n_outputs]``, where ``n_outputs = 1`` for two classes (BCE on the
signal logit) and the number of classes otherwise (softmax). Most models read only ``features``; models
that need 4-vectors (pairwise Minkowski products, ParT's pair features) read ``p4``. Padded particles must
never change the output, and the output must not depend on particle order.

Models with a ``model.inputs`` option (``softsym.models.inputs``: relative features, or 4-vectors in the lab or
jet frame) hold a ``ParticleInputs`` as ``input_map`` and name the linear layers that read its output in
``input_layers()``: what the pseudo-Goldstone analysis moves to reproduce a symmetry's action exactly.

``MODELS`` maps a config name to its class; each model module registers its class with
``@MODELS.register(name)``, and ``MODELS.build(name, n_features=..., n_classes=..., **sizes)`` makes one.
"""

from __future__ import annotations

import torch
from torch import nn

from softsym.models.inputs import ParticleInputs
from softsym.physics import compute_features
from softsym.registry import Registry


def n_outputs_for(n_classes: int) -> int:
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


class JetModel(nn.Module):
    """Base class: stores the sizes every model needs and counts parameters."""

    input_map: ParticleInputs  # only models with a ``model.inputs`` option have one
    # True when some branch reads the 4-vectors other than through ``input_map`` (e.g. pair features), so
    # moving the ``input_layers`` cannot reproduce a symmetry's whole action.
    reads_p4_elsewhere: bool = False

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_classes = n_classes
        self.n_outputs = n_outputs_for(n_classes)

    def input_layers(self) -> dict[str, int]:
        """The ``nn.Linear`` layers that read ``input_map``'s output: name → particles per input row (1: one
        particle per row; k: k particles' inputs concatenated). Empty for models without ``input_map``."""
        return {}

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


MODELS: Registry[JetModel] = Registry("model")


def logits_from_p4(model: nn.Module, p4: torch.Tensor, mask: torch.Tensor,
                   scalars: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of ``model`` for jets given by 4-vectors: features are recomputed from ``p4``.

    This is the function the symmetry penalties, the robustness perturbations and the Hessian analysis
    differentiate, so a transformation of ``p4`` reaches the model as a physical transformation.
    """
    return model(compute_features(p4, mask, scalars), p4, mask)


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over particles ``[B, P, D] -> [B, D]`` of the real ones only."""
    return (x * mask.unsqueeze(-1).to(x.dtype)).sum(-2)
