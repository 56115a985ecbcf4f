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

from softsym.analysis import HessianOperator, exact_hessian, goldstone_overlap, symmetry_directions
from softsym.data.synthetic import synthetic_jets
from softsym.models.base import JetModel, logits_from_p4, masked_sum
from softsym.models.pfn import PFN
from softsym.physics.lorentz import lorentz_generators


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
