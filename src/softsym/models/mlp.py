"""Fully connected network on the flattened, pT-ordered constituent list: the no-structure baseline.

It sees particles in pT order, so it is not permutation invariant by construction; since constituents are
always pT-sorted, the order is canonical and the model's output is still a function of the particle set.
"""

from __future__ import annotations

import torch

from softsym.models.base import MODELS, JetModel
from softsym.models.inputs import DEFAULT_P4_SCALE, ParticleInputs
from softsym.models.pfn import mlp_layers


@MODELS.register("mlp")
class FlatMLP(JetModel):
    """``n_particles`` leading particles' inputs (``inputs``/``p4_scale``: ``softsym.models.inputs``),
    concatenated, through ``hidden_sizes``."""

    def __init__(self, n_features: int, n_classes: int, *, n_particles: int = 32,
                 hidden_sizes: list[int] = (128, 64), inputs: str = "features",
                 p4_scale: float = DEFAULT_P4_SCALE) -> None:
        super().__init__(n_features, n_classes)
        self.n_particles = n_particles
        self.input_map = ParticleInputs(inputs, n_features, p4_scale)
        self.net = mlp_layers([n_particles * self.input_map.n_inputs, *hidden_sizes, self.n_outputs],
                              final_activation=False)

    def input_layers(self) -> dict[str, int]:
        return {"net.0": self.n_particles}

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = self.n_particles
        inputs = self.input_map(features, p4, mask)[:, :n]  # the jet frame needs every particle
        x = inputs * mask[:, :n, None].to(inputs.dtype)
        if x.shape[1] < self.n_particles:  # fewer slots than the network expects: zero padding
            x = torch.nn.functional.pad(x, (0, 0, 0, self.n_particles - x.shape[1]))
        return self.net(x.flatten(1))
