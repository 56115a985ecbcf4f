"""Geometric-complexity regulariser (Dherin et al. 2022): penalty = mean over the batch's jets of ‖∇_x f(x)‖²_F.

x: the jet's input features (real particles only), f: its logits. The gradient is taken with
``create_graph=True`` so the penalty trains (a double backward, ~2-3× the cost of a plain step). Used as
``penalty=gc``: loss = task loss + λ · penalty, exactly like the soft symmetry penalties.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.gradients import jet_input_gradient_norms
from softsym.penalties.registry import PENALTIES


@dataclass(frozen=True)
class GeometricComplexityPenalty:
    """``(logits, penalty) = penalty(model, batch)``; the logits come from the same forward pass."""

    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"penalty.lambda must be >= 0, got {self.weight}")

    def __call__(self, model: nn.Module, batch: JetBatch,
                 rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits ``[B, O]``, mean_b ‖∇_x f(x_b)‖²_F); differentiable when grad mode is on (draws no random
        numbers: ``rng`` is accepted for the penalty interface)."""
        train = torch.is_grad_enabled()
        logits, norms = jet_input_gradient_norms(model, batch, create_graph=train)
        if not train:
            return logits.detach(), norms.mean().detach()
        return logits, norms.mean()


@PENALTIES.register("gc")
def geometric_complexity_penalty(*, weight: float = 0.0, symmetry: str | None = None,
                                 form: str | None = None) -> GeometricComplexityPenalty:
    """``penalty=gc``. No symmetry is imposed: ``symmetry`` only names the generators whose violation is measured
    after training (read by the train stage), and ``form`` has no meaning here."""
    return GeometricComplexityPenalty(weight=weight)
