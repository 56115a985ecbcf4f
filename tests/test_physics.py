"""Lorentz generators, group elements and features: derived properties, checked numerically."""

import math

import pytest
import torch

from softsym.physics import (
    act,
    axis_boost_generator,
    axis_rotation_generator,
    compute_features,
    exp_generator,
    feature_jacobian,
    invariant_mass,
    jet_axis,
    jet_p4,
    lorentz_generators,
    minkowski_dot,
    pt_eta_phi,
)
from softsym.physics.lorentz import METRIC


def test_generators_preserve_the_metric():
    for g in lorentz_generators():
        assert torch.allclose(g.T @ METRIC + METRIC @ g, torch.zeros(4, 4))


def test_generator_conventions():
    k = lorentz_generators()
    p = torch.tensor([5.0, 1.0, 2.0, 3.0])
    assert torch.allclose(k[0] @ p, torch.tensor([1.0, 5.0, 0.0, 0.0]))   # K_x: E <- px, px <- E
    assert torch.allclose(k[5] @ p, torch.tensor([0.0, -2.0, 1.0, 0.0]))  # J_z: px <- -py, py <- px


def _jets(n=16, p=10, seed=0):
    from softsym.data.synthetic import synthetic_jets

    a = synthetic_jets(n, max_particles=p, seed=seed)
    return torch.as_tensor(a.p4, dtype=torch.float64), torch.as_tensor(a.mask)


def test_finite_lorentz_transform_keeps_minkowski_products():
    p4, mask = _jets()
    theta = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.25], dtype=torch.float64)
    g = torch.linalg.matrix_exp(torch.einsum("a,ajk->jk", theta, lorentz_generators().double()))
    q = act(g, p4)
    assert torch.allclose(minkowski_dot(q[:, 0], q[:, 1]), minkowski_dot(p4[:, 0], p4[:, 1]), rtol=1e-9)


def test_axis_rotation_keeps_jet_four_vector_and_turns_eta_phi():
    p4, mask = _jets()
    g = exp_generator(axis_rotation_generator(jet_axis(p4, mask)), torch.full((p4.shape[0],), 0.7, dtype=p4.dtype))
    q = act(g, p4)
    assert torch.allclose(jet_p4(q, mask), jet_p4(p4, mask), rtol=1e-9, atol=1e-6)
    # every constituent keeps its opening angle to the jet axis: a rotation of the (Δη, Δφ) picture
    n = jet_axis(p4, mask).unsqueeze(1)

    def cos_to_axis(x):
        return (x[..., 1:] * n).sum(-1) / x[..., 1:].norm(dim=-1).clamp_min(1e-12)

    assert torch.allclose(cos_to_axis(q)[mask], cos_to_axis(p4)[mask], atol=1e-12)
    assert not torch.allclose(q[mask], p4[mask])


def test_axis_boost_keeps_mass_and_direction_and_scales_energy():
    p4, mask = _jets()
    eta = 0.4
    g = exp_generator(axis_boost_generator(jet_axis(p4, mask)), torch.full((p4.shape[0],), eta, dtype=p4.dtype))
    q = act(g, p4)
    j0, j1 = jet_p4(p4, mask), jet_p4(q, mask)
    assert torch.allclose(invariant_mass(j0), invariant_mass(j1), rtol=1e-8)
    assert torch.allclose(jet_axis(q, mask), jet_axis(p4, mask), atol=1e-9)
    assert bool((j1[:, 0] > j0[:, 0]).all())
    # massless constituents: every energy scales by the Doppler factor for its angle; all grow for η > 0
    assert bool((q[..., 0][mask] > p4[..., 0][mask]).all())


def test_features_of_padded_particles_are_zero_with_finite_gradients():
    p4, mask = _jets()
    p4 = p4.clone().requires_grad_(True)
    feats = compute_features(p4, mask)
    assert bool((feats[~mask] == 0).all())
    feats.sum().backward()
    assert torch.isfinite(p4.grad).all()


def test_features_match_definitions():
    p4, mask = _jets(4, 6)
    feats = compute_features(p4, mask)
    pt, eta, phi = pt_eta_phi(p4[0, 0])
    jpt, jeta, jphi = pt_eta_phi(jet_p4(p4, mask)[0])
    dphi = math.remainder(float(phi - jphi), 2 * math.pi)
    expected = [eta - jeta, dphi, math.log(pt), math.log(p4[0, 0, 0]), math.log(pt / jpt),
                math.log(p4[0, 0, 0] / jet_p4(p4, mask)[0, 0]), math.hypot(float(eta - jeta), dphi)]
    from softsym.physics.features import FEATURE_CENTRE, FEATURE_SCALE

    expected = [(float(e) - c) * s for e, c, s in zip(expected, FEATURE_CENTRE, FEATURE_SCALE, strict=True)]
    assert feats[0, 0].tolist() == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_feature_jacobian_push_and_pull_match_autograd():
    """The closed-form derivative of the features (used by the PFN penalty) is autograd's, both ways."""
    from softsym.data.synthetic import synthetic_jets

    jets = synthetic_jets(12, max_particles=15, seed=3)
    p4, mask = torch.as_tensor(jets.p4, dtype=torch.float64), torch.as_tensor(jets.mask)
    scalars = torch.as_tensor(jets.scalars, dtype=torch.float64)
    assert not mask.all()  # padded slots are part of the check

    def features_of(x):
        return compute_features(x, mask, scalars)

    jacobian = feature_jacobian(p4, mask, features_of(p4))
    gen = torch.Generator().manual_seed(0)
    dp4 = torch.randn(3, *p4.shape, generator=gen, dtype=torch.float64)
    expected = torch.stack([torch.func.jvp(features_of, (p4,), (d,))[1] for d in dp4])
    assert torch.allclose(jacobian.push(dp4), expected, rtol=1e-10, atol=1e-12)

    cotangent = torch.randn(features_of(p4).shape, generator=gen, dtype=torch.float64)
    (expected_grad,) = torch.func.vjp(features_of, p4)[1](cotangent)
    particle, jet = jacobian.pull(cotangent)
    assert torch.allclose(particle + mask.unsqueeze(-1) * jet.unsqueeze(-2), expected_grad, rtol=1e-10, atol=1e-10)
