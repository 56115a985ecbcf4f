"""Particle Flow Network / Deep Sets (Komiske, Metodiev, Thaler 2019): F(Σ_i Φ(x_i))."""

from __future__ import annotations

import torch
from torch import nn

from softsym.models.base import MODELS, JetModel, masked_sum
from softsym.models.inputs import DEFAULT_P4_SCALE, ParticleInputs


def mlp_layers(sizes: list[int], *, final_activation: bool) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@MODELS.register("pfn")
class PFN(JetModel):
    """Per-particle network Φ, a masked sum over particles (permutation invariant), a head F.

    ``inputs``/``p4_scale``: what Φ reads per particle (``softsym.models.inputs``)."""

    def __init__(self, n_features: int, n_classes: int, *, phi_sizes: list[int] = (64, 64),
                 latent_dim: int = 32, head_sizes: list[int] = (64,), inputs: str = "features",
                 p4_scale: float = DEFAULT_P4_SCALE) -> None:
        super().__init__(n_features, n_classes)
        self.input_map = ParticleInputs(inputs, n_features, p4_scale)
        self.phi = mlp_layers([self.input_map.n_inputs, *phi_sizes, latent_dim], final_activation=True)
        self.head = mlp_layers([latent_dim, *head_sizes, self.n_outputs], final_activation=False)

    def input_layers(self) -> dict[str, int]:
        return {"phi.0": 1}

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(masked_sum(self.phi(self.input_map(features, p4, mask)), mask))
