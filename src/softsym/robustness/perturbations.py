"""Perturbations of test jets, one class each, registered in ``PERTURBATIONS`` with
``@PERTURBATIONS.register(name)``: a new perturbation is one class plus one config entry.

Two kinds, so that a perturbation can act where it physically belongs:

- ``MomentumPerturbation`` transforms the 4-vectors (``JetBatch.p4``, and the mask where particles are added
  or lost); the model's features are then recomputed from them (``logits_from_p4``), so a physical
  transformation reaches the model as a consistent jet. The result is again pT-sorted with the real
  particles first and zero padding, as the data contract requires. With a ``jet_radius`` R, particles that
  leave the cone ΔR < R of the perturbed jet's axis are dropped and counted (``apply``); particles that were
  outside the cone before stay (the transformation did not move them out), and the hardest particle always
  stays. One pass: the axis is not recomputed after the drop.
- ``FeaturePerturbation`` changes the model inputs directly (Gaussian noise, FGSM, PGD in
  ``softsym.robustness.attacks``); padded particles are never touched. The model still receives the clean
  ``p4`` (only models reading 4-vectors use it).

Each perturbation says whether it lies inside the group of a penalised symmetry (``relation(symmetry)``:
``inside`` | ``outside``; rotations about the jet axis are inside ``rotation`` and ``lorentz``, boosts along
it inside ``boost`` and ``lorentz``), and whether it is a physical shift (``physical``: a detector or
simulation effect, not an attack in feature space or a worst case).

Strength 0 is the identity by definition (``__call__`` returns its input untouched and draws no random
numbers), so strength 0 reproduces the clean metrics exactly. Randomness comes only from the random stream
``rng`` (a ``torch.Generator``) handed in (drawn on the CPU, then moved), so results are reproducible and
every model sees the same perturbed jets.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.physics.features import compute_features, jet_p4, pt_eta_phi, wrap_phi
from softsym.physics.lorentz import act, exp_generator, invariant_mass, jet_axis, transverse_boost_generator
from softsym.physics.symmetries import SYMMETRIES
from softsym.registry import Registry

INSIDE, OUTSIDE = "inside", "outside"


def _normal(shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=rng, device="cpu").to(like)


def _uniform(shape: tuple[int, ...], rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=rng, device="cpu").to(like)


def _from_pt_eta_phi_m(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor,
                       mass: torch.Tensor) -> torch.Tensor:
    pz = pt * torch.sinh(eta)
    energy = torch.sqrt(mass * mass + pt * pt + pz * pz)
    return torch.stack([energy, pt * torch.cos(phi), pt * torch.sin(phi), pz], dim=-1)


def _count(strength: float, name: str) -> int:
    """A strength that counts particles must be a whole number."""
    if strength != round(strength) or strength < 0:
        raise ValueError(f"{name} strength counts particles: expected a whole number >= 0, got {strength}")
    return round(strength)


def keep_hardest(batch: JetBatch, n_slots: int) -> JetBatch:
    """Sort particles by pT (real first), keep the ``n_slots`` hardest and zero the padding.

    This is what the data pipeline does when it pads a jet, so a perturbation that adds particles beyond the
    free slots replaces the softest ones, exactly as truncation at ``max_particles`` would.
    """
    pt = torch.hypot(batch.p4[..., 1], batch.p4[..., 2])
    key = torch.where(batch.mask, pt, torch.full_like(pt, -math.inf))
    order = key.argsort(dim=-1, descending=True, stable=True)[:, :n_slots].unsqueeze(-1)
    mask = batch.mask.gather(1, order[..., 0])
    real = mask.unsqueeze(-1)
    p4 = batch.p4.gather(1, order.expand(-1, -1, 4))
    scalars = batch.scalars.gather(1, order.expand(-1, -1, batch.scalars.shape[-1]))
    return JetBatch(torch.where(real, p4, 0.0), mask, batch.labels, torch.where(real, scalars, 0.0))


def with_p4_sorted(batch: JetBatch, p4: torch.Tensor) -> JetBatch:
    """``batch`` with new 4-vectors for the same particles, re-sorted by pT (a transformation may reorder)."""
    return keep_hardest(batch.with_p4(p4), batch.mask.shape[1])


def add_particles(batch: JetBatch, p4: torch.Tensor, mask: torch.Tensor, scalars: torch.Tensor) -> JetBatch:
    """Merge extra particles ``[B, K, ...]`` into the jets, keeping the padded size, pT order and masks."""
    merged = JetBatch(torch.cat([batch.p4, p4], 1), torch.cat([batch.mask, mask], 1), batch.labels,
                      torch.cat([batch.scalars, scalars], 1))
    return keep_hardest(merged, batch.mask.shape[1])


def delta_r_to_axis(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ΔR = sqrt(Δη² + Δφ²) of every particle to its jet's axis (the sum of the real particles), ``[B, P]``
    (0 in padded slots)."""
    safe = torch.where(mask.unsqueeze(-1), p4, p4.new_tensor((1.0, 1.0, 0.0, 0.0)))
    _, eta, phi = pt_eta_phi(safe)
    _, jet_eta, jet_phi = pt_eta_phi(jet_p4(p4, mask))
    dr = torch.sqrt((eta - jet_eta[:, None]) ** 2 + wrap_phi(phi - jet_phi[:, None]) ** 2)
    return torch.where(mask, dr, 0.0)


class Perturbation:
    """A perturbation of strength ``s``: ``perturbed(model, batch, s, rng)`` are the model's logits on the
    perturbed jets and the particles dropped outside the jet cone per jet. ``strength_label`` names the
    strength axis of its robustness curve; ``symmetries`` the penalised symmetries whose group contains it."""

    name: ClassVar[str]
    strength_label: ClassVar[str]
    symmetries: ClassVar[frozenset[str]] = frozenset()
    physical: ClassVar[bool] = True

    def relation(self, symmetry: str | None) -> str:
        """``inside`` the group of the penalised ``symmetry``, or ``outside`` it."""
        return INSIDE if symmetry in self.symmetries else OUTSIDE

    def perturbed(self, model: nn.Module, batch: JetBatch, strength: float,
                  rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits ``[B, O]``, particles dropped outside the cone per jet ``[B]``)."""
        raise NotImplementedError

    def perturbed_logits(self, model: nn.Module, batch: JetBatch, strength: float,
                         rng: torch.Generator) -> torch.Tensor:
        return self.perturbed(model, batch, strength, rng)[0]


class MomentumPerturbation(Perturbation):
    """Acts on the 4-vectors; subclasses implement ``transform`` for strength ≠ 0. ``jet_radius``: the cone
    of the jets (None: no particle is dropped for leaving it)."""

    def __init__(self, jet_radius: float | None = None) -> None:
        if jet_radius is not None and jet_radius <= 0:
            raise ValueError(f"jet_radius must be > 0 or null, got {jet_radius}")
        self.jet_radius = jet_radius

    def __call__(self, batch: JetBatch, strength: float, rng: torch.Generator) -> JetBatch:
        return self.apply(batch, strength, rng)[0]

    def apply(self, batch: JetBatch, strength: float, rng: torch.Generator) -> tuple[JetBatch, torch.Tensor]:
        """(perturbed jets, particles dropped per jet for leaving the cone ``[B]``)."""
        if strength == 0:
            return batch, torch.zeros(len(batch), dtype=torch.long, device=batch.mask.device)
        return self.within_cone(batch, lambda b: self.transform(b, float(strength), rng))

    def within_cone(self, batch: JetBatch, transform) -> tuple[JetBatch, torch.Tensor]:
        """``transform(batch)``, then the cone cut. Each particle carries a flag (an extra scalar column, so it
        follows sorting, splitting and replacement) saying it was outside the cone before; added particles
        carry 0, so they must lie inside the new cone."""
        if self.jet_radius is None:
            out = transform(batch)
            return out, torch.zeros(len(out), dtype=torch.long, device=out.mask.device)
        was_outside = (delta_r_to_axis(batch.p4, batch.mask) >= self.jet_radius) & batch.mask
        flagged = JetBatch(batch.p4, batch.mask, batch.labels,
                           torch.cat([batch.scalars, was_outside.unsqueeze(-1).to(batch.scalars.dtype)], -1))
        out = transform(flagged)
        left = out.mask & (delta_r_to_axis(out.p4, out.mask) >= self.jet_radius) & (out.scalars[..., -1] == 0)
        left[:, 0] = False  # the hardest particle stays: a jet is never empty
        kept = JetBatch(out.p4, out.mask & ~left, out.labels, out.scalars[..., :-1])
        return keep_hardest(kept, batch.mask.shape[1]), left.sum(1)

    def transform(self, batch: JetBatch, strength: float, rng: torch.Generator) -> JetBatch:
        raise NotImplementedError

    def perturbed(self, model, batch, strength, rng):
        out, dropped = self.apply(batch, strength, rng)
        return logits_from_p4(model, out.p4, out.mask, out.scalars), dropped


class FeaturePerturbation(Perturbation):
    """Acts on the model inputs ``features [B, P, F]``; subclasses implement ``transform`` for strength ≠ 0.
    The model and the batch (labels, mask) are handed in for the attacks, which need gradients."""

    physical = False

    def __call__(self, model: nn.Module, batch: JetBatch, features: torch.Tensor, strength: float,
                 rng: torch.Generator) -> torch.Tensor:
        if strength == 0:
            return features
        return self.transform(model, batch, features, float(strength), rng)

    def transform(self, model: nn.Module, batch: JetBatch, features: torch.Tensor, strength: float,
                  rng: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def perturbed(self, model, batch, strength, rng):
        features = compute_features(batch.p4, batch.mask, batch.scalars)
        logits = model(self(model, batch, features, strength, rng), batch.p4, batch.mask)
        return logits, torch.zeros(len(batch), dtype=torch.long, device=batch.mask.device)


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")


# --- symmetry transformations (exact group elements about each jet's own axis) -----------------------------

class GroupTransformation(MomentumPerturbation):
    """exp(s·G) applied to every constituent, with the generator G ``[B, 4, 4]`` built from each jet's own axis."""

    def axis_generator(self, batch: JetBatch) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, batch, strength, rng):
        axis_generator = self.axis_generator(batch)
        g = exp_generator(axis_generator, axis_generator.new_full(axis_generator.shape[:-2], strength))
        return with_p4_sorted(batch, act(g, batch.p4))


@PERTURBATIONS.register("rotation")
class AxisRotation(GroupTransformation):
    """Rotation of every constituent about the jet axis by a fixed angle: the jet 4-vector (mass, pT) is
    unchanged; for a collimated jet it turns the constituents about the jet centre in the η–φ plane."""

    name = "rotation"
    strength_label = "rotation angle about the jet axis [rad]"
    symmetries = frozenset({"rotation", "lorentz"})

    def axis_generator(self, batch):
        return SYMMETRIES.build("rotation").generators(batch.p4, batch.mask)[:, 0]


@PERTURBATIONS.register("boost")
class AxisBoost(GroupTransformation):
    """Boost along the jet axis by a rapidity: the jet mass and direction are kept, its energy grows (> 0) or
    shrinks (< 0) and the constituents get narrower or wider."""

    name = "boost"
    strength_label = "boost rapidity along the jet axis"
    symmetries = frozenset({"boost", "lorentz"})

    def axis_generator(self, batch):
        return SYMMETRIES.build("boost").generators(batch.p4, batch.mask)[:, 0]


@PERTURBATIONS.register("transverse_boost")
class TransverseBoost(GroupTransformation):
    """Boost in the transverse plane, orthogonal to the jet's transverse direction: the jet mass is kept, its
    azimuth and constituents' pT balance change."""

    name = "transverse_boost"
    strength_label = "transverse boost rapidity"
    symmetries = frozenset({"lorentz"})

    def axis_generator(self, batch):
        return transverse_boost_generator(jet_axis(batch.p4, batch.mask))


# --- detector effects --------------------------------------------------------------------------------------

@PERTURBATIONS.register("energy_scale")
class EnergyScale(MomentumPerturbation):
    """Jet energy scale shift: every 4-vector scaled by (1 + s); directions are kept, the mass scales."""

    name = "energy_scale"
    strength_label = "jet energy scale shift (fraction)"

    def transform(self, batch, strength, rng):
        if strength <= -1:
            raise ValueError(f"energy_scale shift must be > -1 (a positive scale factor), got {strength}")
        return batch.with_p4(batch.p4 * (1.0 + strength))  # a common positive factor keeps the pT order


@PERTURBATIONS.register("energy_smearing")
class EnergySmearing(MomentumPerturbation):
    """Per-particle energy resolution: each 4-vector scaled by a log-normal factor exp(σz − σ²/2) of mean 1
    and relative width ≈ σ (always positive, so no particle flips or vanishes)."""

    name = "energy_smearing"
    strength_label = "relative energy resolution σ"

    def transform(self, batch, strength, rng):
        z = _normal(tuple(batch.mask.shape), rng, batch.p4)
        factor = torch.exp(strength * z - 0.5 * strength**2)
        return with_p4_sorted(batch, batch.p4 * factor.unsqueeze(-1))


@PERTURBATIONS.register("angular_smearing")
class AngularSmearing(MomentumPerturbation):
    """Per-particle angular resolution: η and φ each shifted by a Gaussian of width σ; pT and mass kept."""

    name = "angular_smearing"
    strength_label = "angular resolution σ(η) = σ(φ)"

    def transform(self, batch, strength, rng):
        m = batch.mask.unsqueeze(-1)
        safe = torch.where(m, batch.p4, batch.p4.new_tensor((1.0, 1.0, 0.0, 0.0)))  # no 0/0 in padded slots
        pt, eta, phi = pt_eta_phi(safe)
        shift = strength * _normal((*batch.mask.shape, 2), rng, batch.p4)
        p4 = _from_pt_eta_phi_m(pt, eta + shift[..., 0], phi + shift[..., 1], invariant_mass(safe))
        return with_p4_sorted(batch, torch.where(m, p4, 0.0))


@PERTURBATIONS.register("soft_contamination")
class SoftContamination(MomentumPerturbation):
    """Pileup-like contamination: n massless soft particles (pT ~ exponential of mean ``pt_mean`` GeV,
    uniform in a disc of radius ``radius`` around the jet axis in η–φ, neutral: zero scalars). They fill free
    padded slots; where there are none the softest particles of the jet are dropped, as padding would do."""

    name = "soft_contamination"
    strength_label = "number of soft particles added"

    def __init__(self, pt_mean: float = 1.0, radius: float = 0.8, jet_radius: float | None = None) -> None:
        super().__init__(jet_radius)
        self.pt_mean = pt_mean
        self.radius = radius

    def transform(self, batch, strength, rng):
        n_soft = _count(strength, self.name)
        shape = (batch.mask.shape[0], n_soft)
        u = _uniform((*shape, 3), rng, batch.p4)
        pt = (-self.pt_mean * torch.log1p(-u[..., 0])).clamp_min(1e-3 * self.pt_mean)  # never exactly 0
        r = self.radius * u[..., 1].sqrt()
        angle = 2 * math.pi * u[..., 2]
        _, jet_eta, jet_phi = pt_eta_phi(jet_p4(batch.p4, batch.mask))
        eta = jet_eta[:, None] + r * torch.cos(angle)
        phi = jet_phi[:, None] + r * torch.sin(angle)
        p4 = _from_pt_eta_phi_m(pt, eta, phi, torch.zeros_like(pt))
        mask = torch.ones(shape, dtype=torch.bool, device=batch.mask.device)
        return add_particles(batch, p4, mask, batch.scalars.new_zeros((*shape, batch.scalars.shape[-1])))


@PERTURBATIONS.register("collinear_split")
class CollinearSplitting(MomentumPerturbation):
    """IRC check: each of the k hardest particles is split into two exactly collinear ones carrying momentum
    fractions z and 1 − z (z uniform in [z_min, 1 − z_min]) that sum to the original 4-vector; both keep the
    parent's scalars. An IRC-safe observable is unchanged (as long as the jet has free slots)."""

    name = "collinear_split"
    strength_label = "number of hardest particles split"

    def __init__(self, z_min: float = 0.1, jet_radius: float | None = None) -> None:
        super().__init__(jet_radius)
        if not 0.0 < z_min <= 0.5:
            raise ValueError(f"collinear_split z_min must be in (0, 0.5], got {z_min}")
        self.z_min = z_min

    def transform(self, batch, strength, rng):
        k = min(_count(strength, self.name), batch.mask.shape[1])
        z = self.z_min + (1 - 2 * self.z_min) * _uniform((batch.mask.shape[0], k, 1), rng, batch.p4)
        parents = batch.p4[:, :k]
        kept = z * parents
        p4 = torch.cat([kept, batch.p4[:, k:]], 1)
        return add_particles(batch.with_p4(p4), parents - kept, batch.mask[:, :k], batch.scalars[:, :k])


@PERTURBATIONS.register("constituent_loss")
class ConstituentLoss(MomentumPerturbation):
    """Tracking inefficiency: each particle is lost with probability p (the leading one always survives, so a
    jet is never empty); the survivors are compacted to the front in their pT order, the mask follows."""

    name = "constituent_loss"
    strength_label = "constituent loss probability"

    def transform(self, batch, strength, rng):
        survive = _uniform(tuple(batch.mask.shape), rng, batch.p4) >= strength
        survive[:, 0] = True
        lost = JetBatch(batch.p4, batch.mask & survive, batch.labels, batch.scalars)
        return keep_hardest(lost, batch.mask.shape[1])


@PERTURBATIONS.register("pileup")
class PileUp(MomentumPerturbation):
    """Pile-up-like soft particles: a Poisson number of mean ρ·π·radius² per jet (ρ = the strength, particles
    per unit η–φ area), charged-pion mass, pT ~ exponential of mean ``pt_mean`` GeV, uniform in the disc of
    ``radius`` around the jet axis, zero scalars. Unlike ``soft_contamination`` the count fluctuates from jet
    to jet and the particles are massive."""

    name = "pileup"
    strength_label = "pile-up density ρ [particles per unit η–φ area]"
    PION_MASS = 0.13957

    def __init__(self, pt_mean: float = 0.7, radius: float = 0.8, jet_radius: float | None = None) -> None:
        super().__init__(jet_radius)
        self.pt_mean = pt_mean
        self.radius = radius

    def transform(self, batch, strength, rng):
        if strength < 0:
            raise ValueError(f"pileup density must be >= 0, got {strength}")
        n_jets = batch.mask.shape[0]
        rate = torch.full((n_jets,), strength * math.pi * self.radius**2, dtype=torch.float64)
        counts = torch.poisson(rate, generator=rng).long()
        k = max(int(counts.max()), 1)
        u = _uniform((n_jets, k, 3), rng, batch.p4)
        pt = (-self.pt_mean * torch.log1p(-u[..., 0])).clamp_min(1e-3 * self.pt_mean)
        r = self.radius * u[..., 1].sqrt()
        angle = 2 * math.pi * u[..., 2]
        _, jet_eta, jet_phi = pt_eta_phi(jet_p4(batch.p4, batch.mask))
        p4 = _from_pt_eta_phi_m(pt, jet_eta[:, None] + r * torch.cos(angle), jet_phi[:, None] + r * torch.sin(angle),
                                torch.full_like(pt, self.PION_MASS))
        mask = torch.arange(k, device=batch.mask.device)[None] < counts.to(batch.mask.device)[:, None]
        p4 = torch.where(mask.unsqueeze(-1), p4, 0.0)
        return add_particles(batch, p4, mask, batch.scalars.new_zeros((n_jets, k, batch.scalars.shape[-1])))
