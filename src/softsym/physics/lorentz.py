"""Lorentz generators and group elements acting on 4-vectors p = (E, px, py, pz).

Conventions: a generator G is a 4x4 matrix acting on column 4-vectors, a group element is exp(θ G).
On a particle array ``p4 [..., P, 4]`` (row vectors) the action is ``p4 @ g.T``.

- Boost generators K_i mix E with p_i:  K_x: E <- px, px <- E (symmetric).
- Rotation generators J_i mix two spatial components:  J_z: px <- -py, py <- px (antisymmetric).
Every generator satisfies Gᵀ η + η G = 0 with η = diag(1, -1, -1, -1), i.e. exp(θ G) keeps every
Minkowski product; ``tests/test_physics.py`` checks this and the jet-axis forms below.
"""

from __future__ import annotations

import torch

E, X, Y, Z = 0, 1, 2, 3
METRIC = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0]))


def _unit(i: int, j: int) -> torch.Tensor:
    m = torch.zeros(4, 4)
    m[i, j] = 1.0
    return m


def boost_generator(axis: int) -> torch.Tensor:
    """K_axis for axis in {1, 2, 3} (x, y, z): E <- p_axis, p_axis <- E."""
    return _unit(E, axis) + _unit(axis, E)


def rotation_generator(axis: int) -> torch.Tensor:
    """J_axis for axis in {1, 2, 3}: the right-handed rotation about that axis (J_z: px <- -py, py <- px)."""
    a, b = {X: (Y, Z), Y: (Z, X), Z: (X, Y)}[axis]
    return _unit(b, a) - _unit(a, b)


def lorentz_generators() -> torch.Tensor:
    """The six generators of SO(1,3), stacked ``[6, 4, 4]``: K_x, K_y, K_z, J_x, J_y, J_z."""
    return torch.stack([boost_generator(X), boost_generator(Y), boost_generator(Z),
                        rotation_generator(X), rotation_generator(Y), rotation_generator(Z)])


def jet_axis(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit 3-vector of the jet momentum (sum of real constituents), ``[..., 3]``."""
    jet = (p4 * mask.unsqueeze(-1).to(p4.dtype)).sum(-2)
    p3 = jet[..., 1:]
    return p3 / p3.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def axis_boost_generator(n: torch.Tensor) -> torch.Tensor:
    """Boost generator along unit vectors ``n [..., 3]``: Σ_i n_i K_i, shape ``[..., 4, 4]``.

    exp(η K_n) boosts the jet along its own axis by rapidity η: the jet's invariant mass and direction are
    kept, its energy changes, and the constituents' opening angles shrink (η > 0) or widen.
    """
    k = torch.stack([boost_generator(X), boost_generator(Y), boost_generator(Z)]).to(n)
    return torch.einsum("...i,ijk->...jk", n, k)


def axis_rotation_generator(n: torch.Tensor) -> torch.Tensor:
    """Rotation generator about unit vectors ``n [..., 3]``: Σ_i n_i J_i, shape ``[..., 4, 4]``.

    exp(φ J_n) rotates every constituent about the jet axis: the jet 4-vector is unchanged, and for a
    collimated jet the constituents turn by φ in the (Δη, Δφ) plane about the jet centre.
    """
    j = torch.stack([rotation_generator(X), rotation_generator(Y), rotation_generator(Z)]).to(n)
    return torch.einsum("...i,ijk->...jk", n, j)


def transverse_boost_generator(n: torch.Tensor) -> torch.Tensor:
    """Boost generator along the unit vector in the transverse plane orthogonal to the jet's transverse
    direction (it changes the jet's azimuth and pT balance rather than its rapidity)."""
    t = torch.stack([-n[..., 1], n[..., 0], torch.zeros_like(n[..., 0])], dim=-1)
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return axis_boost_generator(t)


def act(g: torch.Tensor, p4: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 matrices ``g [..., 4, 4]`` (one per jet, or shared) to ``p4 [..., P, 4]``."""
    return p4 @ g.transpose(-1, -2)


def exp_generator(generator: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Group element exp(θ G) for generators ``[..., 4, 4]`` and parameters broadcast to ``[...]``."""
    return torch.linalg.matrix_exp(theta[..., None, None] * generator)


def minkowski_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def invariant_mass(p4: torch.Tensor) -> torch.Tensor:
    """Mass of 4-vectors ``[..., 4]``, with m² clamped at 0 (massless rounding)."""
    return minkowski_dot(p4, p4).clamp_min(0.0).sqrt()
