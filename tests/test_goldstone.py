"""Pseudo-Goldstone modes on a toy with an exact Lorentz symmetry, where the zero modes are known analytically.

Toy: f(x) = a · s + d with s = zᵀ η z and z = W P, P the jet's 4-vector (a first linear layer on 4-vectors
followed by a Minkowski invariant), fitted by MSE to targets it reproduces exactly (a zero-loss minimum, so
H = 2/N JᵀJ). For every W the function is unchanged by W → Λ W (Λ ∈ SO(1,3): 6 modes) and by
W → e^ε W, a → e^{−2ε} a (1 mode): exactly 7 zero modes. If W is itself a Lorentz transformation the model
is Lorentz invariant and the input-side directions δW = W G_a (6 of them) lie in that null space
(W G_a = (W G_a W⁻¹) W): overlap 1. For a generic W the model is not invariant, the null space is still
7-dimensional, but the W G_a are not in it: the overlap is low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from softsym.analysis import (
    HessianOperator,
    analyze_hessian,
    exact_hessian,
    goldstone_overlap,
    jet_task_loss,
    symmetry_directions,
)
from softsym.analysis.goldstone.checks import direction_error, parameter_tangent
from softsym.analysis.goldstone.curvature import curvature_ratio, loss_profiles, near_zero_count
from softsym.analysis.goldstone.null_space import structural_null_space
from softsym.data.jets import JetBatch
from softsym.data.synthetic import synthetic_jets
from softsym.models.base import JetModel, logits_from_p4, masked_sum
from softsym.models.inputs import ParticleInputs
from softsym.models.pfn import PFN
from softsym.physics.lorentz import lorentz_generators
from softsym.physics.symmetries import SYMMETRIES


@dataclass(frozen=True)
class ToyBatch:
    p4: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    scalars: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.p4.shape[0])


class MinkowskiToy(JetModel):
    def __init__(self) -> None:
        super().__init__(7, 2)
        self.lin = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(1, 1)

    def forward(self, features, p4, mask):
        z = self.lin(masked_sum(p4, mask))
        return self.head(z[:, :1] ** 2 - (z[:, 1:] ** 2).sum(-1, keepdim=True))


def mse(model, batch):
    return ((logits_from_p4(model, batch.p4, batch.mask, batch.scalars)[:, 0] - batch.target) ** 2).mean()


def _toy(invariant: bool):
    g = torch.Generator().manual_seed(0)
    n = 200
    p = torch.randn(n, 3, generator=g, dtype=torch.float64)
    mass = 0.5 + 1.5 * torch.rand(n, generator=g, dtype=torch.float64)
    p4 = torch.cat([torch.sqrt((p * p).sum(1, keepdim=True) + mass[:, None] ** 2), p], 1)[:, None, :]
    torch.manual_seed(1)
    model = MinkowskiToy().double()
    gens = lorentz_generators().double()
    if invariant:
        w = torch.linalg.matrix_exp(torch.einsum("a,ajk->jk", 0.5 * torch.randn(6, dtype=torch.float64), gens))
    else:
        w = torch.randn(4, 4, dtype=torch.float64)
    with torch.no_grad():
        model.lin.weight.copy_(w)
    batch = ToyBatch(p4, torch.ones(n, 1, dtype=torch.bool), torch.zeros(n, dtype=torch.long),
                     torch.zeros(n, 1, 0, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
    with torch.no_grad():
        target = logits_from_p4(model, batch.p4, batch.mask, batch.scalars)[:, 0]
    batch = ToyBatch(batch.p4, batch.mask, batch.labels, batch.scalars, target)
    return model, batch, w, gens


@pytest.mark.parametrize("invariant", [True, False])
def test_toy_has_the_predicted_zero_modes_and_directions(invariant):
    model, batch, w, gens = _toy(invariant)
    op = HessianOperator(model, [batch], loss_fn=mse)
    ex = exact_hessian(op)
    ratio = np.sort(np.abs(ex.eigenvalues)) / np.abs(ex.eigenvalues).max()
    assert np.all(ratio[:7] < 1e-12) and ratio[7] > 1e-8  # exactly 7 zero modes, a clear gap
    dirs = symmetry_directions(model, [batch], "lorentz", param_names=op.names)
    assert dirs.layer == "lin"
    assert np.allclose(dirs.fit_r2, 1.0)
    analytic = np.stack([(w @ gens[a]).reshape(-1).numpy() for a in range(6)])
    assert np.allclose(dirs.vectors[:, :16], analytic, atol=1e-12)  # δW = W·G_a
    assert np.all(dirs.vectors[:, 16:] == 0)
    go = goldstone_overlap(dirs, eigenvalues=ex.eigenvalues, eigenvectors=ex.eigenvectors, near_zero_eps=1e-10)
    assert go.n_near_zero == 7 and go.n_directions == 6
    assert go.chance == pytest.approx(7 / op.n)
    if invariant:
        assert go.overlap > 1 - 1e-9
        assert np.all(go.per_direction > 1 - 1e-9)
        assert np.all(np.abs(go.curvature) < 1e-12)
        assert go.excess == pytest.approx(1.0)
        # the same from Lanczos quadrature, without eigenvectors
        q = goldstone_overlap(dirs, op=op, lambda_max=float(np.abs(ex.eigenvalues).max()), near_zero_eps=1e-10,
                              near_zero_frac=7 / op.n, n_steps=op.n)
        assert q.overlap == pytest.approx(1.0, abs=1e-6)
    else:
        assert go.overlap < 0.5
        assert go.overlap < go.chance + 0.1
        assert go.metrics()["hessian_goldstone_overlap"] == go.overlap


def test_jet_axis_rotation_directions_on_a_pfn():
    """On a PFN the rotation about the jet axis moves (Δη, Δφ) by a rotation: the fitted action on the first
    layer's input is dominated by that 2×2 block, and the direction lives in phi.0 only."""
    torch.manual_seed(0)
    arrays = synthetic_jets(16, max_particles=10, seed=4)
    model = PFN(8, 2, phi_sizes=[8], latent_dim=4, head_sizes=[8])
    dirs = symmetry_directions(model, [arrays.to_batch()], "rotation")
    assert dirs.layer == "phi.0" and dirs.vectors.shape == (1, model.n_params)
    lin = dirs.feature_generators[0][:8]  # t ≈ Lᵀ u + c
    block = lin[:2, :2]
    assert block[0, 1] * block[1, 0] < 0  # antisymmetric: a rotation of (Δη, Δφ)
    assert abs(block[0, 1]) > 0.5 and abs(block[1, 0]) > 0.5
    assert 0.3 < dirs.fit_r2[0] <= 1.0
    n_first = 8 * 8 + 8
    assert np.any(dirs.vectors[0, :n_first] != 0) and np.all(dirs.vectors[0, n_first:] == 0)


# ---------------------------------------------------------------- exact directions on 4-vector inputs

MATCHING = [("p4", "lorentz"), ("p4_jet", "rotation"), ("p4_jet", "boost")]


def _jets(dtype=torch.float32, n=24, seed=3):
    b = synthetic_jets(n, max_particles=10, seed=seed).to_batch()
    return JetBatch(b.p4.to(dtype), b.mask, b.labels, b.scalars.to(dtype))


def _pfn(inputs, dtype, *, trained: bool, batch=None):
    torch.manual_seed(0)
    model = PFN(8, 2, phi_sizes=[16], latent_dim=8, head_sizes=[16], inputs=inputs).to(dtype)
    if trained:  # a brief fit: 30 Adam steps on the task loss
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(30):
            opt.zero_grad()
            jet_task_loss(model, batch).backward()
            opt.step()
    return model.eval()


@pytest.mark.parametrize("inputs,symmetry", MATCHING)
@pytest.mark.parametrize("dtype,bound", [(torch.float32, 1e-3), (torch.float64, 1e-10)])
@pytest.mark.parametrize("trained", [False, True])
def test_direction_error_is_rounding_on_4_vector_inputs(inputs, symmetry, dtype, bound, trained):
    batch = _jets(dtype)
    model = _pfn(inputs, dtype, trained=trained, batch=batch)
    dirs = symmetry_directions(model, [batch], symmetry)
    assert dirs.method == "linear" and dirs.exact and dirs.layers == ("phi.0",)
    check = direction_error(model, [batch], dirs, symmetry)
    assert check.exact and np.all(check.reference > 1e-3 * check.output_norm)  # a real, non-trivial action
    assert check.error < bound
    assert check.metrics()["goldstone_direction_error"] == check.error


def test_direction_is_w_times_the_generator_on_p4():
    batch = _jets(torch.float64)
    model = _pfn("p4", torch.float64, trained=False)
    dirs = symmetry_directions(model, [batch], "lorentz")
    W = model.phi[0].weight.detach()
    for a, G in enumerate(lorentz_generators().double()):
        full = torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64)
        full[:4, :4] = G
        assert np.allclose(dirs.vectors[a, : W.numel()], (W @ full).reshape(-1).numpy(), atol=1e-14)
        assert np.all(dirs.vectors[a, W.numel():] == 0)


@pytest.mark.parametrize("inputs,symmetry", MATCHING)
def test_finite_difference_identity_is_second_order(inputs, symmetry):
    """f(θ + εv_a, x) − f(θ, x + εG_a x) = O(ε²) (float64, ε = 1e-2 and 1e-3)."""
    batch = _jets(torch.float64)
    model = _pfn(inputs, torch.float64, trained=True, batch=batch)
    dirs = symmetry_directions(model, [batch], symmetry)
    gens = SYMMETRIES.build(symmetry).generators(batch.p4, batch.mask)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    f0 = logits_from_p4(model, batch.p4, batch.mask, batch.scalars).detach()
    for a in range(len(dirs.generator_names)):
        for eps in (1e-2, 1e-3):
            moved = {n: base[n] + eps * torch.as_tensor(dirs.vectors[a][blk.slice]).view(blk.shape)
                     for n, blk in zip(dirs.param_names, _layout(model, dirs.param_names), strict=True)}
            by_params = _logits_with(model, moved, batch)
            p4 = batch.p4 + eps * torch.einsum("bjk,bpk->bpj", gens[:, a], batch.p4) * batch.mask[..., None]
            by_inputs = logits_from_p4(model, p4, batch.mask, batch.scalars).detach()
            assert float((by_params - by_inputs).norm()) <= 10 * eps**2 * float(f0.norm())


def _layout(model, names):
    from softsym.analysis import parameter_layout
    return parameter_layout(model, list(names))


def _logits_with(model, params, batch):
    from softsym.physics import compute_features
    features = compute_features(batch.p4, batch.mask, batch.scalars)
    with torch.no_grad():
        return torch.func.functional_call(model, params, (features, batch.p4, batch.mask))


def test_direction_error_on_relative_features_is_computed_and_reported():
    batch = _jets(torch.float64)
    model = _pfn("features", torch.float64, trained=False)
    dirs = symmetry_directions(model, [batch], "rotation")
    check = direction_error(model, [batch], dirs, "rotation")
    assert dirs.method == "fit" and not check.exact
    assert np.isfinite(check.error) and check.error > 1e-3  # the fit leaves a measured, non-zero mismatch
    assert check.metrics()["goldstone_directions_exact"] == 0.0


class InvariantByConstruction(JetModel):
    """First layer on p4 (and the charge column) mapping each 4-vector to K multiples of itself
    (W = [w ⊗ I_4, 0]), then only Minkowski products of the summed blocks: exactly Lorentz invariant for these
    weights."""

    def __init__(self, k: int = 3, hidden: int = 6) -> None:
        super().__init__(8, 2)
        self.k = k
        self.input_map = ParticleInputs("p4", 8, p4_scale=100.0)
        self.lin = nn.Linear(5, 4 * k, bias=False)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.weight[:, :4] = torch.kron(torch.linspace(0.5, 1.5, k)[:, None], torch.eye(4))
        n_pairs = k * (k + 1) // 2
        self.head = nn.Sequential(nn.Linear(n_pairs, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def input_layers(self):
        return {"lin": 1}

    def forward(self, features, p4, mask):
        z = masked_sum(self.lin(self.input_map(features, p4, mask)), mask).view(-1, self.k, 4)
        eta = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=z.dtype)
        products = torch.einsum("bki,i,bli->bkl", z, eta, z)
        rows, cols = torch.triu_indices(self.k, self.k)
        return self.head(torch.asinh(products[:, rows, cols]))


def _padded(g: torch.Tensor) -> torch.Tensor:
    """A 4x4 matrix on the momentum columns of the 5 inputs (4-vector + charge), 0 on the charge."""
    out = torch.zeros(5, 5, dtype=g.dtype)
    out[:4, :4] = g
    return out


def _invariant_case(k=3, hidden=6, n=16):
    torch.manual_seed(2)
    model = InvariantByConstruction(k, hidden).double().eval()
    return model, _jets(torch.float64, n=n, seed=5)


def test_exactly_invariant_model_both_sides_vanish_and_curvature_is_the_orbit_term():
    model, batch = _invariant_case()
    dirs = symmetry_directions(model, [batch], "lorentz")
    assert dirs.exact
    check = direction_error(model, [batch], dirs, "lorentz")
    assert np.all(check.reference < 1e-8) and np.all(check.parameter_side < 1e-8) and np.all(check.mismatch < 1e-8)
    op = HessianOperator(model, [batch])
    grad = op.gradient.numpy()
    assert np.linalg.norm(grad) > 1e-3  # not a critical point: the orbit term is not trivially zero
    W = model.lin.weight.detach()
    logits = logits_from_p4(model, batch.p4, batch.mask, batch.scalars).detach()[:, 0]
    ell2 = torch.sigmoid(logits) * (1 - torch.sigmoid(logits))  # BCE's second derivative in the logit
    for a, G in enumerate(lorentz_generators().double()):
        v = dirs.vectors[a]
        _, jv = parameter_tangent(model, batch, v, dirs.param_names)
        gauss_newton = float((ell2 * jv[:, 0].detach() ** 2).mean())
        assert abs(gauss_newton) < 1e-16
        full = float(v @ op.matvec(torch.as_tensor(v)).numpy())
        orbit = np.zeros_like(v)
        orbit[: W.numel()] = (W @ _padded(G @ G)).reshape(-1).numpy()
        expected = -float(grad @ orbit)
        assert abs(expected) > 1e-6
        assert full == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_orbit_curvature_against_an_independent_autograd_hessian():
    model, batch = _invariant_case(k=2, hidden=3, n=6)
    dirs = symmetry_directions(model, [batch], "lorentz")
    names = list(dirs.param_names)
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    flat0 = torch.cat([named[n].detach().reshape(-1) for n in names])

    def loss(flat):
        params, start = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = flat[start:start + s.numel()].view(s)
            start += s.numel()
        from softsym.physics import compute_features
        features = compute_features(batch.p4, batch.mask, batch.scalars)
        logits = torch.func.functional_call(model, params, (features, batch.p4, batch.mask))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], batch.labels.double())

    H = torch.autograd.functional.hessian(loss, flat0).numpy()
    grad = torch.func.grad(loss)(flat0).numpy()
    op = HessianOperator(model, [batch])
    W = model.lin.weight.detach()
    for a, G in enumerate(lorentz_generators().double()):
        v = dirs.vectors[a]
        orbit = np.zeros_like(v)
        orbit[: W.numel()] = (W @ _padded(G @ G)).reshape(-1).numpy()
        assert float(v @ H @ v) == pytest.approx(-float(grad @ orbit), rel=1e-8, abs=1e-14)
        assert float(v @ op.matvec(torch.as_tensor(v)).numpy()) == pytest.approx(float(v @ H @ v), rel=1e-8,
                                                                                  abs=1e-14)


def test_curvature_ratio_profiles_and_counts_against_the_exact_hessian():
    batch = _jets(torch.float64, n=12)
    model = _pfn("p4", torch.float64, trained=True, batch=batch)
    op = HessianOperator(model, [batch])
    ex = exact_hessian(op, eigenvectors=True)
    lam, U = ex.eigenvalues, ex.eigenvectors
    H = (U * lam) @ U.T
    dirs = symmetry_directions(model, [batch], "lorentz", param_names=op.names)
    V = dirs.vectors / np.linalg.norm(dirs.vectors, axis=1, keepdims=True)
    expected = np.mean(np.einsum("ai,ij,aj->a", V, H, V)) / (np.trace(H) / op.n)
    cr = curvature_ratio(op, dirs, trace=float(np.trace(H)), trace_se=0.1 * float(np.trace(H)))
    assert cr.ratio == pytest.approx(expected, rel=1e-8)
    assert cr.ratio_se == pytest.approx(0.1 * abs(cr.ratio), rel=1e-12)
    t = np.array([-1e-5, 0.0, 1e-5])  # small: no ReLU of the trained PFN switches between the points
    prof = loss_profiles(op, dirs, t, n_random=3, seed=1)
    assert prof.symmetry.shape == (6, 3) and prof.random.shape == (3, 3) and np.all(prof.symmetry[:, 1] == 0)
    g = op.gradient.numpy()
    for a, v in enumerate(V):  # L(θ ± t v) − L(θ) = ±t g·v + t² vᵀHv / 2 + O(t³)
        minus, _, plus = prof.symmetry[a]
        assert (plus - minus) / (2 * t[2]) == pytest.approx(g @ v, rel=1e-6, abs=1e-9)
        assert (plus + minus) / t[2] ** 2 == pytest.approx(v @ H @ v, rel=1e-3, abs=1e-4)
    thr = 1e-4
    assert near_zero_count(thr, eigenvalues=lam).count == np.sum(np.abs(lam) < thr)
    hess = analyze_hessian(op, method="lanczos", k=4, k_bottom=2, slq_probes=4, slq_steps=op.n, seed=0)
    slq = near_zero_count(thr, density=hess.density)
    assert slq.method == "slq" and np.isfinite(slq.count_se)
    assert abs(slq.count - np.sum(np.abs(lam) < thr)) < 4 * slq.count_se + 0.05 * op.n


def test_structural_null_space_counts():
    batch = _jets(torch.float32, n=10)
    model = _pfn("features", torch.float32, trained=False)
    with torch.no_grad():  # kill two units of the first layer
        model.phi[0].weight[:2] = 0.0
        model.phi[0].bias[:2] = -1.0
    s = structural_null_space(model, [batch])
    assert s.gn_rank_bound == min(model.n_params, len(batch) * model.n_outputs)
    assert s.dead_units >= 2
    assert s.rescaling_symmetries == 16 + 8 + 16  # every hidden ReLU unit between two linear layers
    assert s.n_relu_units == 16 + 8 + 16
    assert s.metrics()["hessian_dead_units"] == s.dead_units
