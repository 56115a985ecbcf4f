"""Hessian operator, exact Hessian, Lanczos, trace estimators and SLQ on models with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from softsym.analysis import (
    HessianOperator,
    analyze_hessian,
    exact_hessian,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    spectral_density,
    xtrace,
)
from softsym.data.jets import JetArrays
from softsym.data.synthetic import synthetic_jets
from softsym.models.mlp import FlatMLP
from softsym.models.pfn import PFN

N_QUAD = 60


def _quadratic_matrix() -> tuple[np.ndarray, np.ndarray]:
    """A = Q diag(λ) Qᵀ with known, well-separated extremes and an indefinite bulk."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(N_QUAD, N_QUAD)))
    lam = np.concatenate([[40.0, 25.0, 12.0], rng.uniform(-1.0, 3.0, N_QUAD - 5), [-6.0, -9.0]])
    return (q * lam) @ q.T, np.sort(lam)


class Quadratic(nn.Module):
    """θ split over two parameter tensors; the loss ½ θᵀAθ + bᵀθ has Hessian A wherever θ is."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(7, 5, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(N_QUAD - 35, generator=g, dtype=torch.float64))


@pytest.fixture(scope="module")
def quadratic():
    a, lam = _quadratic_matrix()
    at = torch.from_numpy(a)
    lin = torch.linspace(-1, 1, N_QUAD, dtype=torch.float64)

    def loss_fn(model, batch):
        theta = torch.cat([model.w.reshape(-1), model.b])
        return 0.5 * theta @ at @ theta + lin @ theta + 0 * batch.sum()

    op = HessianOperator(Quadratic(), [torch.zeros(3), torch.zeros(5)], loss_fn=loss_fn)
    return op, a, lam


def test_quadratic_exact_and_lanczos(quadratic):
    op, a, lam = quadratic
    ex = exact_hessian(op)
    assert np.allclose(ex.matrix, a, atol=1e-12)
    assert np.allclose(ex.eigenvalues, lam, atol=1e-5)
    res = lanczos(op, k=3, k_bottom=2, tol=1e-10, seed=3)
    assert res.converged
    assert np.allclose(res.top.values, lam[::-1][:3], atol=1e-5)
    assert np.allclose(res.bottom.values, lam[:2], atol=1e-5)
    # Ritz vectors are eigenvectors; the reported residuals are the true ones
    true_res = np.linalg.norm(a @ res.top.vectors - res.top.vectors * res.top.values, axis=0)
    assert np.all(true_res < 1e-6)
    assert np.allclose(true_res, res.top.residuals, atol=1e-8)


@pytest.mark.parametrize("estimator", [hutchpp_trace, xtrace, hutchinson_trace])
def test_trace_within_three_standard_errors(quadratic, estimator):
    op, a, _ = quadratic
    before = op.n_matvecs
    est = estimator(op, n_matvecs=30, seed=7)
    assert op.n_matvecs - before <= 30
    assert est.std_error > 0
    assert abs(est.value - np.trace(a)) < 3 * est.std_error
    again = estimator(op, n_matvecs=30, seed=7)
    assert again.value == est.value  # seeded: reproducible


def _tiny_jets(n_per_class=24, particles=12, seed=0) -> JetArrays:
    return synthetic_jets(n_per_class, max_particles=particles, seed=seed)


@pytest.fixture(scope="module")
def mlp_exact():
    torch.manual_seed(0)
    arrays = _tiny_jets()
    model = FlatMLP(8, 2, n_particles=10, hidden_sizes=[10, 8])
    op = HessianOperator(model, [arrays.to_batch()], dtype=torch.float64)
    return model, arrays, op, exact_hessian(op)


def test_small_mlp_lanczos_top5_matches_eigh(mlp_exact):
    _, _, op, ex = mlp_exact
    res = lanczos(op, k=5, tol=1e-6, seed=0)
    top = ex.eigenvalues[::-1][:5]
    assert res.converged
    assert np.max(np.abs(res.top.values - top) / np.abs(top)) < 1e-4


def test_block_triangular_exact_equals_all_columns_and_products_agree(mlp_exact):
    model, arrays, op, ex = mlp_exact
    full = exact_hessian(HessianOperator(model, [arrays.to_batch()], dtype=torch.float64), triangular=False)
    assert np.allclose(ex.matrix, full.matrix, atol=1e-10 * np.abs(full.matrix).max())
    assert ex.full_matvec_equivalents < full.n_matvecs  # the restricted graphs are cheaper
    v = torch.randn(op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = op.matvec(v)
    for kwargs in ({"hvp": "fwd_rev"}, {"cache_graph": False}):
        other = HessianOperator(model, [arrays.to_batch()], dtype=torch.float64, **kwargs)
        assert torch.allclose(other.matvec(v), ref, atol=1e-10)
    batched = op.matmat(torch.eye(op.n, dtype=torch.float64)[:, :5], columns_per_call=5)
    assert np.allclose(batched.numpy(), ex.matrix[:, :5], atol=1e-10)


def test_evaluation_set_is_jet_weighted_and_model_untouched():
    torch.manual_seed(1)
    arrays = _tiny_jets(40, 10, seed=2)
    model = PFN(8, 2, phi_sizes=[8], latent_dim=4, head_sizes=[8])
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    whole = HessianOperator(model, [arrays.to_batch()], dtype=torch.float64)
    split = HessianOperator(model, [arrays.subset(np.arange(29)).to_batch(),
                                    arrays.subset(np.arange(29, 80)).to_batch()], dtype=torch.float64)
    untrimmed = HessianOperator(model, [arrays.to_batch()], dtype=torch.float64, trim=False)
    assert len(whole.batches) > 1 and len(untrimmed.batches) == 1
    assert max(b.p4.shape[1] for b in whole.batches) == int(arrays.mask.sum(1).max())
    assert min(b.p4.shape[1] for b in whole.batches) < arrays.mask.shape[1]
    v = torch.randn(whole.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(whole.matvec(v), split.matvec(v), atol=1e-12)
    assert torch.allclose(whole.matvec(v), untrimmed.matvec(v), atol=1e-12)
    assert abs(whole.loss - split.loss) < 1e-12
    assert torch.allclose(whole.gradient, split.gradient, atol=1e-12)
    assert model.training  # the analysis worked on an eval-mode copy
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.dtype == torch.float32 for p in model.parameters())
    assert whole.graph_bytes > 0


def test_analyze_hessian_exact_and_lanczos_agree(mlp_exact, tmp_path):
    _, _, op, ex = mlp_exact
    exact = analyze_hessian(op, method="exact", k=5, k_bottom=2, near_zero_eps=1e-3, eff_dim_z=0.1)
    lanc = analyze_hessian(op, method="lanczos", k=5, k_bottom=2, tol=1e-6, trace_matvecs=45, slq_probes=4,
                           slq_steps=30, near_zero_eps=1e-3, eff_dim_z=0.1, seed=1)
    for name in ("hessian_top_eig", "hessian_trace", "hessian_trace_se", "hessian_near_zero_frac",
                 "hessian_neg_frac", "hessian_eff_dim"):
        assert name in exact.metrics and name in lanc.metrics
    lam = ex.eigenvalues
    assert exact.metrics["hessian_trace"] == pytest.approx(lam.sum())
    assert exact.metrics["hessian_top_eig"] == pytest.approx(lam.max())
    thr = 1e-3 * np.abs(lam).max()
    assert exact.metrics["hessian_near_zero_frac"] == pytest.approx(np.mean(np.abs(lam) < thr))
    assert exact.metrics["hessian_neg_frac"] == pytest.approx(np.mean(lam < -thr))
    pos = lam[lam > 0]
    assert exact.metrics["hessian_eff_dim"] == pytest.approx(np.sum(pos / (pos + 0.1)))
    assert lanc.metrics["hessian_top_eig"] == pytest.approx(lam.max(), rel=1e-5)
    assert abs(lanc.metrics["hessian_trace"] - lam.sum()) < 3 * lanc.metrics["hessian_trace_se"] + 1e-9
    assert lanc.metrics["hessian_near_zero_frac"] == pytest.approx(exact.metrics["hessian_near_zero_frac"], abs=0.1)
    assert lanc.metrics["hessian_lanczos_converged"] == 1.0
    # auto picks exact for small models
    assert analyze_hessian(op, method="auto", exact_max_params=op.n, density=False).method == "exact"
    assert analyze_hessian(op, method="auto", exact_max_params=op.n - 1, k=2, k_bottom=0, trace_matvecs=9,
                           density=False).method == "lanczos"
    from softsym.analysis.plots import plot_density, plot_spectrum

    assert plot_spectrum(lam, tmp_path / "spectrum.png", near_zero_eps=1e-3).stat().st_size > 0
    assert plot_density(lanc.density, tmp_path / "density.png", eigenvalues=lam).stat().st_size > 0


def test_slq_density_is_a_probability_measure(quadratic):
    op, a, lam = quadratic
    dens = spectral_density(op, n_probes=10, n_steps=N_QUAD, seed=0)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(dens.weights.sum(1), 1.0)
    # with a full Krylov space the quadrature is exact for polynomials: tr(H) up to the probe noise
    assert dens.trace_of(lambda x: x) == pytest.approx(np.trace(a), rel=0.5)
    assert dens.nodes.min() == pytest.approx(lam.min(), abs=1e-6)
    assert dens.nodes.max() == pytest.approx(lam.max(), abs=1e-6)


def test_unknown_options_are_reported():
    with pytest.raises(ValueError, match="hvp"):
        HessianOperator(nn.Linear(2, 1), [torch.zeros(1)], loss_fn=lambda m, b: m.weight.sum(), hvp="magic")
    with pytest.raises(ValueError, match="method"):
        analyze_hessian(HessianOperator(nn.Linear(2, 1), [torch.zeros(1)],
                                        loss_fn=lambda m, b: (m.weight ** 2).sum()), method="bogus")


def test_density_standard_errors_match_the_spread_over_seeds():
    """On a matrix with a known spectrum (through the matvec protocol), each density-derived quantity's reported
    s.e. (probe spread / √P) matches the spread of the estimates over many seeds, and with a full Krylov space
    (steps = n: the quadrature is exact for every probe) the estimates centre on the true values."""
    from softsym.analysis import density_metrics

    rng = np.random.default_rng(3)
    n = 40
    lam = np.concatenate([[30.0, 12.0], rng.uniform(-0.5, 2.0, 26), np.zeros(6), [-0.01, 1e-4, -2e-4, 5e-5],
                          [-3.0, -1.0]])
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = (q * lam) @ q.T
    lmax, eps, tau, z = 30.0, 1e-3, 1e-3, 0.5
    truth = {"hessian_near_zero_frac": np.mean(np.abs(lam) < eps * lmax),
             "hessian_neg_frac": np.mean(lam < -eps * lmax),
             "hessian_near_zero_frac_abs": np.mean(np.abs(lam) < tau), "hessian_neg_frac_abs": np.mean(lam < -tau),
             "hessian_eff_dim": np.sum(lam[lam > 0] / (lam[lam > 0] + z))}
    runs = [density_metrics(spectral_density(a, n_probes=4, n_steps=n, seed=s), lmax, near_zero_eps=eps,
                            near_zero_abs=tau, eff_dim_z=z) for s in range(250)]
    for name, value in truth.items():
        est = np.array([r[name] for r in runs])
        se = np.array([r[f"{name}_se"] for r in runs])
        spread, reported = est.std(ddof=1), np.sqrt(np.mean(se ** 2))
        assert reported == pytest.approx(spread, rel=0.15), name
        assert abs(est.mean() - value) < 4 * spread / np.sqrt(len(est)) + 1e-9, name
    assert np.allclose([r["hessian_n_near_zero_se"] for r in runs], [n * r["hessian_near_zero_frac_se"] for r in runs])


def test_trace_standard_error_matches_the_spread_over_seeds(quadratic):
    _, a, lam = quadratic
    for estimator in (hutchpp_trace, xtrace, hutchinson_trace):
        runs = [estimator(a, n_matvecs=30, seed=s) for s in range(150)]
        est, se = np.array([r.value for r in runs]), np.array([r.std_error for r in runs])
        assert np.sqrt(np.mean(se ** 2)) == pytest.approx(est.std(ddof=1), rel=0.3), estimator.__name__
        assert abs(est.mean() - lam.sum()) < 4 * est.std(ddof=1) / np.sqrt(len(est)), estimator.__name__


def test_exact_metrics_have_zero_errors_and_absolute_thresholds(mlp_exact):
    _, _, op, ex = mlp_exact
    m = analyze_hessian(op, method="exact", k=3, k_bottom=1, near_zero_abs=1e-4).metrics
    lam = ex.eigenvalues
    assert m["hessian_near_zero_frac_abs"] == pytest.approx(np.mean(np.abs(lam) < 1e-4))
    assert m["hessian_neg_frac_abs"] == pytest.approx(np.mean(lam < -1e-4))
    assert all(m[k] == 0.0 for k in m if k.endswith(("_se", "_err")) and k != "hessian_trace_se")
