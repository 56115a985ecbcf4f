"""Geometric complexity: exact on linear maps; the GC regulariser's contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from softsym.analysis import geometric_complexity
from softsym.data.jets import JetBatch
from softsym.data.synthetic import synthetic_jets
from softsym.models.base import JetModel, logits_from_p4
from softsym.models.gradients import jet_input_gradient_norms
from softsym.models.pfn import PFN
from softsym.penalties.geometric import GeometricComplexityPenalty


class LinearOnFeatures(JetModel):
    """f(x) = A vec(x) + b on the flattened (particle, feature) array."""

    def __init__(self, n_particles: int, n_features: int, n_classes: int) -> None:
        super().__init__(n_features, n_classes)
        self.lin = nn.Linear(n_particles * n_features, self.n_outputs)

    def forward(self, features, p4, mask):
        return self.lin(features.flatten(1))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_gc_of_a_linear_map_is_its_squared_frobenius_norm(n_classes):
    torch.manual_seed(0)
    arrays = synthetic_jets(6, max_particles=5, seed=1)
    batch = arrays.to_batch()
    full = JetBatch(batch.p4, torch.ones_like(batch.mask), batch.labels, batch.scalars)
    full = JetBatch(torch.where(full.mask[..., None], full.p4, full.p4[:, :1]), full.mask, full.labels, full.scalars)
    model = LinearOnFeatures(5, 8, n_classes)
    frob = float((model.lin.weight.detach() ** 2).sum())
    assert geometric_complexity(model, [full]) == pytest.approx(frob, rel=1e-6)
    # padded particles do not count: only the columns of real particles
    w = model.lin.weight.detach().view(model.n_outputs, 5, 8)
    real = batch.mask.float()
    expected = float(((w ** 2).sum((0, 2))[None, :] * real).sum(1).mean())
    assert geometric_complexity(model, [batch]) == pytest.approx(expected, rel=1e-6)


def test_gc_is_jet_weighted_over_batches_and_keeps_the_mode():
    torch.manual_seed(0)
    arrays = synthetic_jets(10, max_particles=8, seed=2)
    model = PFN(8, 2, phi_sizes=[8], latent_dim=4, head_sizes=[8])
    model.train()
    whole = geometric_complexity(model, [arrays.to_batch()])
    parts = [arrays.subset(np.arange(0, 13)).to_batch(), arrays.subset(np.arange(13, 20)).to_batch()]
    assert geometric_complexity(model, parts) == pytest.approx(whole, rel=1e-6)
    assert model.training


def test_gc_penalty_contract():
    torch.manual_seed(0)
    arrays = synthetic_jets(8, max_particles=8, seed=3)
    batch = arrays.to_batch()
    model = PFN(8, 2, phi_sizes=[8], latent_dim=4, head_sizes=[8])
    penalty = GeometricComplexityPenalty(weight=0.5)
    logits, value = penalty(model, batch)
    assert torch.allclose(logits, logits_from_p4(model, batch.p4, batch.mask, batch.scalars))
    assert float(value) == pytest.approx(geometric_complexity(model, [batch]), rel=1e-5)
    (value * penalty.weight).backward()  # the penalty trains: second-order gradients reach every layer
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.phi.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in model.phi.parameters())
    with torch.no_grad():
        logits2, value2 = penalty(model, batch)
    assert not value2.requires_grad and float(value2) == pytest.approx(float(value), rel=1e-6)
    with pytest.raises(ValueError):
        GeometricComplexityPenalty(weight=-1.0)
    _, norms = jet_input_gradient_norms(model, batch)
    assert norms.shape == (len(batch),) and (norms >= 0).all()


def test_gc_penalty_is_registered():
    from softsym.penalties import PENALTIES

    penalty = PENALTIES.build("gc", symmetry="lorentz", form="infinitesimal", weight=0.1)
    assert isinstance(penalty, GeometricComplexityPenalty) and penalty.weight == 0.1


@pytest.mark.parametrize("n_out", [1, 3])
def test_temperature_fit_is_the_grid_minimum_and_recovers_a_known_temperature(n_out):
    from softsym.analysis.calibration import fit_temperature, tempered_loss

    rng = np.random.default_rng(4)
    z = torch.from_numpy(rng.normal(0, 2.0, (4000, n_out)))
    t_true = 2.5  # labels drawn from the model at temperature t_true: the fit should find it
    if n_out == 1:
        y = torch.from_numpy((rng.random(4000) < 1 / (1 + np.exp(-z[:, 0].numpy() / t_true))).astype(np.int64))
    else:
        p = torch.softmax(z / t_true, -1).numpy()
        y = torch.from_numpy(np.array([rng.choice(n_out, p=row) for row in p]))
    fit = fit_temperature(z, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 4001))
    losses = np.array([tempered_loss(z, y, t) for t in grid])
    assert fit.loss <= losses.min() + 1e-12
    assert fit.temperature == pytest.approx(grid[losses.argmin()], rel=2e-3)
    assert fit.temperature == pytest.approx(t_true, rel=0.1)
    assert fit.loss_at_one == pytest.approx(tempered_loss(z, y, 1.0)) and fit.loss < fit.loss_at_one


def test_tempered_model_divides_the_logits_and_gc_by_t_squared():
    from softsym.analysis.calibration import fit_model_temperature, tempered

    torch.manual_seed(0)
    arrays = synthetic_jets(12, max_particles=8, seed=3)
    batch = arrays.to_batch()
    model = PFN(8, 2, phi_sizes=[8], latent_dim=4, head_sizes=[8])
    hot = tempered(model, 3.0)
    assert [n for n, _ in hot.named_parameters()] == [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        assert torch.allclose(logits_from_p4(hot, batch.p4, batch.mask, batch.scalars),
                              logits_from_p4(model, batch.p4, batch.mask, batch.scalars) / 3.0)
    assert geometric_complexity(hot, [batch]) == pytest.approx(geometric_complexity(model, [batch]) / 9.0, rel=1e-5)
    fit = fit_model_temperature(model, [batch])
    assert fit.temperature > 0 and fit.n_jets == len(arrays) and fit.loss <= fit.loss_at_one + 1e-12
    with pytest.raises(ValueError):
        tempered(model, 0.0)
