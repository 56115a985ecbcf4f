"""The symmetries a jet tagger can be asked to respect, by name: their Lie-algebra generators acting on every
particle's 4-momentum, and random group elements built from them.

``SYMMETRIES.build(name)`` gives a ``Symmetry``: ``generators(p4, mask)`` are the generators ``[B, A, 4, 4]``
for each jet of a batch, ``generator_names`` and ``is_boost`` name and classify the A generators. The
soft symmetry penalties, the pseudo-Goldstone analysis and the robustness perturbations all read the
generators from here.

- ``rotation``: SO(2) about the jet axis (J_axis);
- ``boost``: boosts along the jet axis (K_axis);
- ``lorentz``: the six generators of SO(1,3) (K_x, K_y, K_z, J_x, J_y, J_z), the same for every jet.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from softsym.physics.lorentz import axis_boost_generator, axis_rotation_generator, jet_axis, lorentz_generators
from softsym.registry import Registry


class Symmetry:
    """A named set of generators; subclasses implement ``generators``."""

    name: ClassVar[str]
    generator_names: ClassVar[tuple[str, ...]]
    is_boost: ClassVar[tuple[bool, ...]]  # per generator: a boost (rapidity) or a rotation (angle)

    def generators(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Generators ``[B, A, 4, 4]`` for the jets ``p4 [B, P, 4]`` with real particles ``mask [B, P]``."""
        raise NotImplementedError


SYMMETRIES: Registry[Symmetry] = Registry("symmetry")


@SYMMETRIES.register("rotation")
class AxisRotationSymmetry(Symmetry):
    """SO(2) rotations about each jet's own axis."""

    name = "rotation"
    generator_names = ("J_axis",)
    is_boost = (False,)

    def generators(self, p4, mask):
        return axis_rotation_generator(jet_axis(p4, mask)).unsqueeze(1)


@SYMMETRIES.register("boost")
class AxisBoostSymmetry(Symmetry):
    """Boosts along each jet's own axis."""

    name = "boost"
    generator_names = ("K_axis",)
    is_boost = (True,)

    def generators(self, p4, mask):
        return axis_boost_generator(jet_axis(p4, mask)).unsqueeze(1)


@SYMMETRIES.register("lorentz")
class LorentzSymmetry(Symmetry):
    """The proper orthochronous Lorentz group: three boosts and three rotations about the fixed axes."""

    name = "lorentz"
    generator_names = ("K_x", "K_y", "K_z", "J_x", "J_y", "J_z")
    is_boost = (True, True, True, False, False, False)

    def generators(self, p4, mask):
        return lorentz_generators().to(p4).expand(p4.shape[0], -1, -1, -1)


def symmetry_generators(symmetry: str, p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generators ``[B, A, 4, 4]`` of ``symmetry`` for each jet and whether each is a boost ``[A]`` (bool)."""
    sym = SYMMETRIES.build(symmetry)
    return sym.generators(p4, mask), torch.tensor(sym.is_boost)


def sample_group_elements(symmetry: str, p4: torch.Tensor, mask: torch.Tensor, *, max_angle: float,
                          max_rapidity: float, rng: torch.Generator | None = None) -> torch.Tensor:
    """One random group element per jet ``[B, 4, 4]``: exp(Σ_a θ_a G_a), θ_a ~ U(−range_a, range_a), the range
    being ``max_rapidity`` for boosts and ``max_angle`` for rotations. Drawn on the CPU from ``rng``."""
    gens, is_boost = symmetry_generators(symmetry, p4, mask)
    ranges = torch.where(is_boost, max_rapidity, max_angle).to(p4)
    u = torch.rand(gens.shape[:2], generator=rng, device="cpu").to(p4)
    theta = (2 * u - 1) * ranges
    return torch.linalg.matrix_exp(torch.einsum("ba,bajk->bjk", theta, gens))
