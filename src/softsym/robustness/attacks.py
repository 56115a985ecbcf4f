"""Perturbations that search or shake: noise and gradient attacks on the model inputs (feature space), and an
adversary in 4-vector space that moves each particle's momentum within a relative bound, keeps its mass and
lets the features follow.

The feature-space attacks (``feature_noise``, ``fgsm``, ``pgd``) perturb standardised features one by one,
so Δη, Δφ, ΔR and the log-momenta of a perturbed particle no longer belong to one 4-vector: the attacked
input is no jet. ``p4_pgd`` attacks the jet itself: every input it hands the model is the feature vector of
real 4-vectors.
"""

from __future__ import annotations

import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.robustness.perturbations import (
    PERTURBATIONS,
    FeaturePerturbation,
    MomentumPerturbation,
    _normal,
    _uniform,
    with_p4_sorted,
)
from softsym.training.metrics import task_loss


def _real(features: torch.Tensor, batch: JetBatch) -> torch.Tensor:
    """``features`` with the padded particles zeroed: perturbations never touch padding."""
    return features * batch.mask.unsqueeze(-1).to(features.dtype)


@PERTURBATIONS.register("feature_noise")
class FeatureNoise(FeaturePerturbation):
    """Gaussian noise of width σ (feature units) on every feature of every real particle."""

    name = "feature_noise"
    strength_label = "feature noise σ"

    def transform(self, model, batch, features, strength, rng):
        return features + _real(strength * _normal(tuple(features.shape), rng, features), batch)


def loss_gradient(model: nn.Module, batch: JetBatch, features: torch.Tensor) -> torch.Tensor:
    """∂(task loss on the true labels)/∂features, with gradients enabled even under an outer no_grad."""
    with torch.enable_grad():
        x = features.detach().requires_grad_(True)
        loss = task_loss(model(x, batch.p4, batch.mask), batch.labels)
        return torch.autograd.grad(loss, x)[0]


@PERTURBATIONS.register("fgsm")
class FGSM(FeaturePerturbation):
    """Fast gradient sign attack (Goodfellow et al. 2015): one step of size ε along sign(∇ loss), L∞ ball of
    radius ε in feature units, real particles only."""

    name = "fgsm"
    strength_label = "adversarial ε (L∞, feature units)"

    def transform(self, model, batch, features, strength, rng):
        return features + _real(strength * loss_gradient(model, batch, features).sign(), batch)


@PERTURBATIONS.register("pgd")
class PGD(FeaturePerturbation):
    """Projected gradient descent (Madry et al. 2018): a uniform random start in the L∞ ball of radius ε, then
    ``steps`` sign-gradient steps of size ``step_factor``·ε/steps, each projected back onto the ball; real
    particles only."""

    name = "pgd"
    strength_label = "adversarial ε (L∞, feature units)"

    def __init__(self, steps: int = 10, step_factor: float = 2.5) -> None:
        if steps < 1:
            raise ValueError(f"pgd steps must be >= 1, got {steps}")
        self.steps = steps
        self.step_factor = step_factor

    def transform(self, model, batch, features, strength, rng):
        step_size = self.step_factor * strength / self.steps
        delta = _real(strength * (2 * _uniform(tuple(features.shape), rng, features) - 1), batch)
        for _ in range(self.steps):
            grad = loss_gradient(model, batch, features + delta)
            delta = _real((delta + step_size * grad.sign()).clamp(-strength, strength), batch)
        return features + delta


# --- an adversary in 4-vector space ------------------------------------------------------------------------

def particle_masses(p4: torch.Tensor) -> torch.Tensor:
    """m = sqrt(max(E² − |p|², 0)) per particle ``[..., P]``."""
    return (p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(-1)).clamp_min(0.0).sqrt()


def moved_p4(p4: torch.Tensor, mass: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """4-vectors with 3-momenta p + shift and the same masses: E = sqrt(|p + shift|² + m²)."""
    p3 = p4[..., 1:] + shift
    return torch.cat([torch.sqrt((p3 * p3).sum(-1, keepdim=True) + mass.unsqueeze(-1) ** 2), p3], -1)


def _project(u: torch.Tensor) -> torch.Tensor:
    """Each 3-vector of ``u [..., 3]`` onto the unit ball."""
    return u / u.norm(dim=-1, keepdim=True).clamp_min(1.0)


@PERTURBATIONS.register("p4_pgd")
class MomentumPGD(MomentumPerturbation):
    """Projected gradient ascent of the task loss over the particles' 3-momenta (Madry et al. 2018, in
    4-vector space): each particle's shift δ_i obeys ‖δ_i‖ ≤ ε‖p_i‖ (ε = the strength, a relative bound), its
    mass is kept (E recomputed from the new 3-momentum and the particle's mass), and the model sees the
    features recomputed from the moved 4-vectors. A uniform random start in every particle's ball, then
    ``steps`` steps of ``step_factor``·ε/steps along each particle's normalised gradient, projected back.
    Computed in float64 (the mass of a light particle at high energy cancels badly in float32). Real
    particles only; the cone cut of ``jet_radius`` applies to the result."""

    name = "p4_pgd"
    strength_label = "adversarial relative momentum shift ε"
    physical = False

    def __init__(self, steps: int = 5, step_factor: float = 2.5, jet_radius: float | None = None) -> None:
        super().__init__(jet_radius)
        if steps < 1:
            raise ValueError(f"p4_pgd steps must be >= 1, got {steps}")
        self.steps = steps
        self.step_factor = step_factor

    def attack(self, model: nn.Module, batch: JetBatch, strength: float, rng: torch.Generator) -> JetBatch:
        """The attacked jets, same slots (not re-sorted, no cone cut): for the bound and mass checks."""
        if strength < 0:
            raise ValueError(f"p4_pgd bound must be >= 0, got {strength}")
        dtype = batch.p4.dtype
        p4 = batch.p4.double()
        mass = particle_masses(p4)
        real = batch.mask.unsqueeze(-1).double()
        radius = strength * p4[..., 1:].norm(dim=-1, keepdim=True) * real  # ‖δ_i‖ ≤ ε‖p_i‖
        direction = _normal((*batch.mask.shape, 3), rng, p4)
        scale = _uniform((*batch.mask.shape, 1), rng, p4) ** (1 / 3)  # uniform in the ball
        u = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12) * scale
        step = self.step_factor / self.steps
        scalars = batch.scalars.to(dtype)
        for _ in range(self.steps):
            with torch.enable_grad():
                u = u.detach().requires_grad_(True)
                moved = moved_p4(p4, mass, radius * u).to(dtype)
                moved = torch.where(batch.mask.unsqueeze(-1), moved, batch.p4)
                loss = task_loss(logits_from_p4(model, moved, batch.mask, scalars), batch.labels)
                grad = torch.autograd.grad(loss, u)[0]
            u = _project(u.detach() + step * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-30))
        moved = moved_p4(p4, mass, radius * u)
        return batch.with_p4(torch.where(batch.mask.unsqueeze(-1), moved, p4).to(dtype))

    def perturbed(self, model, batch, strength, rng):
        if strength == 0:
            return super().perturbed(model, batch, strength, rng)
        attacked = self.attack(model, batch, strength, rng)  # same slots as ``batch``
        out, dropped = self.within_cone(batch, lambda flagged: with_p4_sorted(flagged, attacked.p4))
        return logits_from_p4(model, out.p4, out.mask, out.scalars), dropped

    def transform(self, batch, strength, rng):
        raise TypeError("p4_pgd needs the model: use perturbed(model, batch, strength, rng) or attack(...)")
