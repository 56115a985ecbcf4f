"""Robustness perturbations keep what they should, strength 0 is clean, PGD beats random noise."""

import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from softsym.data.jets import JetBatch
from softsym.data.loaders import InMemoryLoader
from softsym.models import MODELS
from softsym.physics import compute_features, invariant_mass, jet_axis, jet_p4, pt_eta_phi
from softsym.robustness import (
    PERTURBATIONS,
    MomentumPerturbation,
    PerturbationScan,
    area_under_robustness_curve,
    evaluate_robustness,
    format_strength,
    plot_robustness_curves,
    scans_from_config,
    signal_score,
)
from softsym.training import FitConfig, classification_metrics, fit, predict
from softsym.training.objective import penalised_objective

CONFIG = Path(__file__).parents[1] / "configs" / "robustness" / "default.yaml"
# A strength per 4-vector perturbation that changes jets clearly.
MOMENTUM_STRENGTHS = {"rotation": 1.0, "boost": 0.4, "transverse_boost": 0.3, "energy_scale": 0.1,
                      "energy_smearing": 0.2, "angular_smearing": 0.05, "soft_contamination": 10,
                      "collinear_split": 3, "constituent_loss": 0.3}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch(toy_jets):
    """Toy jets in float64, so the exact invariances can be checked to ~1e-10."""
    b = toy_jets.to_batch()
    return JetBatch(b.p4.double(), b.mask, b.labels, b.scalars.double())


@pytest.fixture(scope="module")
def trained(toy_jets):
    torch.manual_seed(0)
    model = MODELS.build("pfn", n_features=8, n_classes=2, phi_sizes=[16], latent_dim=8, head_sizes=[16])
    fit(model, InMemoryLoader(toy_jets.subset(slice(0, 192)), batch_size=32, shuffle=True),
        InMemoryLoader(toy_jets.subset(slice(192, None)), batch_size=64), penalised_objective(None),
        FitConfig(epochs=4, lr=5e-3, progress=False))
    return model


def _jet(b):
    return jet_p4(b.p4, b.mask)


def _relative(a, b):
    return ((a - b).abs() / b.abs()).max().item()


def test_every_perturbation_is_configured_and_builds():
    cfg = OmegaConf.create({"seed": 0, "train": {"eval_batch_size": 512},
                            "robustness": yaml.safe_load(CONFIG.read_text())})
    robustness = OmegaConf.to_container(cfg.robustness, resolve=True)
    scans = scans_from_config(robustness["perturbations"])
    assert sorted(s.name for s in scans) == PERTURBATIONS.names()
    assert all(PERTURBATIONS.get(name).name == name for name in PERTURBATIONS)
    assert all(0.0 in s.strengths for s in scans)
    assert dict((s.name, s.strengths) for s in scans)["pgd"] == tuple(robustness["adversarial_eps"])
    with pytest.raises(KeyError, match="unknown perturbation"):
        PERTURBATIONS.build("wobble")
    with pytest.raises(ValueError, match="bad options"):
        scans_from_config({"rotation": {"strengths": [0.0], "angle": 1}})
    with pytest.raises(ValueError, match="whole number"):
        PERTURBATIONS.build("collinear_split")(JetBatch(*[torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=bool),
                                                        torch.zeros(1), torch.zeros(1, 2, 0)]), 0.5, _gen())


@pytest.mark.parametrize("name", list(MOMENTUM_STRENGTHS))
def test_momentum_perturbations_keep_the_jet_layout(batch, name):
    """pT-sorted, real particles first, zero padding, finite; seeded: same generator seed, same jets."""
    perturbation = PERTURBATIONS.build(name)
    out = perturbation(batch, MOMENTUM_STRENGTHS[name], _gen())
    assert out.p4.shape == batch.p4.shape and out.scalars.shape == batch.scalars.shape
    assert torch.isfinite(out.p4).all()
    assert (out.mask[:, :-1] >= out.mask[:, 1:]).all()
    assert (out.p4[~out.mask] == 0).all() and (out.scalars[~out.mask] == 0).all()
    pt = torch.where(out.mask, torch.hypot(out.p4[..., 1], out.p4[..., 2]), -1.0)
    assert (pt[:, :-1] >= pt[:, 1:]).all()
    assert not torch.equal(out.p4, batch.p4)
    again = perturbation(batch, MOMENTUM_STRENGTHS[name], _gen())
    assert torch.equal(out.p4, again.p4) and torch.equal(out.mask, again.mask)


def test_rotation_keeps_the_jet_four_vector(batch):
    out = PERTURBATIONS.build("rotation")(batch, 1.0, _gen())
    assert _relative(_jet(out), _jet(batch)) < 1e-10  # so jet mass, pT, direction
    assert torch.equal(out.mask, batch.mask)
    eta0, phi0 = pt_eta_phi(batch.p4[:, 0])[1:]
    eta1, phi1 = pt_eta_phi(out.p4[:, 0])[1:]
    assert (eta1 - eta0).abs().max() > 0.01 or (phi1 - phi0).abs().max() > 0.01  # constituents did move


@pytest.mark.parametrize("name", ["boost", "transverse_boost"])
def test_boosts_keep_the_jet_mass(batch, name):
    out = PERTURBATIONS.build(name)(batch, 0.4, _gen())
    assert _relative(invariant_mass(_jet(out)), invariant_mass(_jet(batch))) < 1e-9
    if name == "boost":  # along the axis: the direction stays, the energy grows
        assert (jet_axis(out.p4, out.mask) - jet_axis(batch.p4, batch.mask)).abs().max() < 1e-10
        assert (_jet(out)[:, 0] > _jet(batch)[:, 0]).all()


def test_energy_scale_and_smearings_keep_what_they_should(batch):
    scaled = PERTURBATIONS.build("energy_scale")(batch, 0.05, _gen())
    assert _relative(invariant_mass(_jet(scaled)), 1.05 * invariant_mass(_jet(batch))) < 1e-10
    smeared = PERTURBATIONS.build("energy_smearing")(batch, 0.2, _gen())  # directions kept, particle by particle
    assert _relative(torch.sort(pt_eta_phi(smeared.p4[smeared.mask])[1]).values,
                     torch.sort(pt_eta_phi(batch.p4[batch.mask])[1]).values) < 1e-9
    moved = PERTURBATIONS.build("angular_smearing")(batch, 0.05, _gen())  # pT kept, particle by particle
    assert torch.allclose(torch.hypot(moved.p4[..., 1], moved.p4[..., 2]),
                          torch.hypot(batch.p4[..., 1], batch.p4[..., 2]), rtol=1e-10)


def test_collinear_splitting_keeps_the_jet_four_vector(batch):
    k = 3
    out = PERTURBATIONS.build("collinear_split")(batch, k, _gen())
    free = (~batch.mask).sum(1) >= k
    assert free.sum() > 10 and (~free).sum() > 0  # both cases are exercised
    assert _relative(_jet(out)[free], _jet(batch)[free]) < 1e-10
    assert torch.equal(out.mask.sum(1)[free], batch.mask.sum(1)[free] + k)
    assert (out.mask.sum(1)[~free] == batch.mask.shape[1]).all()  # full jets stay full: softest dropped
    # the daughters point exactly along their parent
    hardest = batch.p4[free, 0, 1:]
    cosine = torch.nn.functional.cosine_similarity(out.p4[free][..., 1:], hardest[:, None], dim=-1)
    assert ((cosine > 1 - 1e-12) & out.mask[free]).sum(1).min() >= 2


def test_constituent_loss_keeps_masks_consistent(batch):
    out = PERTURBATIONS.build("constituent_loss")(batch, 0.3, _gen())
    n_in, n_out = batch.mask.sum(1), out.mask.sum(1)
    assert (n_out <= n_in).all() and (n_out >= 1).all() and n_out.sum() < 0.8 * n_in.sum()
    assert torch.equal(out.p4[:, 0], batch.p4[:, 0])  # the leading particle always survives
    # every survivor is one of the jet's own particles, in the original order
    same = (out.p4[:, :, None] == batch.p4[:, None]).all(-1) & out.mask[:, :, None] & batch.mask[:, None]
    assert torch.equal(same.any(-1), out.mask)
    index = same.float().argmax(-1)
    assert (torch.where(out.mask, index, 10**6).diff(dim=1)[out.mask[:, 1:]] > 0).all()


def test_soft_contamination_fills_free_slots_then_replaces_the_softest(batch):
    n_soft = 10
    out = PERTURBATIONS.build("soft_contamination", pt_mean=1.0, radius=0.8)(batch, n_soft, _gen())
    free = (~batch.mask).sum(1)
    assert torch.equal(out.mask.sum(1), torch.minimum(batch.mask.sum(1) + n_soft, torch.tensor(batch.mask.shape[1])))
    room = free >= n_soft
    added = _jet(out)[room] - _jet(batch)[room]
    assert (pt_eta_phi(added)[0] < 10 * n_soft).all()  # only soft momentum was added
    full = free == 0
    assert full.any() and torch.equal(out.p4[full, 0], batch.p4[full, 0])  # the hard core stays


def test_strength_zero_is_the_identity(batch):
    for name in PERTURBATIONS:
        p = PERTURBATIONS.build(name)
        if isinstance(p, MomentumPerturbation):
            assert p(batch, 0.0, _gen()) is batch, name


def test_strength_zero_reproduces_the_clean_test_metrics_exactly(trained, toy_jets):
    loader = InMemoryLoader(toy_jets, batch_size=100)
    clean = classification_metrics(*predict(trained, loader), toy_jets.class_names)
    strengths = {**MOMENTUM_STRENGTHS, "feature_noise": 0.1, "fgsm": 0.05, "pgd": 0.05}
    scans = [PerturbationScan(PERTURBATIONS.build(name), (0.0, strengths[name])) for name in PERTURBATIONS]
    result = evaluate_robustness(trained, loader, scans, seed=3)
    assert (result.clean_auc, result.clean_rej50) == (clean["test_auc"], clean["test_rej50"])
    metrics = result.metrics()
    for name in PERTURBATIONS:
        assert metrics[f"robust_{name}_auc_0"] == clean["test_auc"]
        assert metrics[f"robust_{name}_rej50_0"] == clean["test_rej50"]
        assert metrics[f"robust_{name}_dout_0"] == 0.0
        assert metrics[f"robust_{name}_dout_{format_strength(strengths[name])}"] > 0.0
    assert evaluate_robustness(trained, loader, scans, seed=3).metrics() == metrics  # seeded
    assert all(re.fullmatch(r"[A-Za-z0-9_\-./]+", name) for name in metrics)


def test_pgd_finds_a_larger_output_change_than_random_noise(trained, toy_jets):
    b = toy_jets.to_batch()
    eps = 0.05
    features = compute_features(b.p4, b.mask, b.scalars)
    real = b.mask.unsqueeze(-1).float()
    random_sign = eps * (2 * torch.randint(0, 2, features.shape, generator=_gen()) - 1) * real

    def dout(perturbed):
        with torch.no_grad():
            return (signal_score(trained(perturbed, b.p4, b.mask)) - signal_score(trained(features, b.p4, b.mask))
                    ).abs().mean().item()

    attacked = {name: PERTURBATIONS.build(name)(trained, b, features, eps, _gen()) for name in ("fgsm", "pgd")}
    for name, x in attacked.items():
        delta = x - features
        assert (delta[~b.mask] == 0).all(), name  # padding never perturbed
        assert delta.abs().max() <= eps + 1e-5, name  # float32 rounding of features + delta
    noise = PERTURBATIONS.build("feature_noise")(trained, b, features, eps, _gen()) - features
    assert (noise[~b.mask] == 0).all()
    assert dout(attacked["pgd"]) > 3 * dout(features + random_sign)
    assert dout(attacked["pgd"]) >= dout(attacked["fgsm"]) * 0.9


def test_aurc_and_metric_names():
    assert area_under_robustness_curve([0.0, 1.0, 2.0], [0.9, 0.8, 0.6]) == pytest.approx((0.85 + 0.7) / 2)
    assert area_under_robustness_curve([0.5, -0.5, 0.0], [0.7, 0.7, 0.9]) == pytest.approx(0.8)
    assert area_under_robustness_curve([0.0], [0.9]) == 0.9
    assert [format_strength(s) for s in (0.0, -0.05, math.pi, 20, 1e-7)] == ["0", "-0.05", "3.14159", "20", "1e-07"]


def test_curve_plots_overlay_models(trained, toy_jets, tmp_path):
    loader = InMemoryLoader(toy_jets.subset(slice(0, 128)), batch_size=128)
    scans = scans_from_config({"rotation": {"strengths": [0, 0.5, 1.0]}, "boost": {"strengths": [-0.3, 0, 0.3]}})
    results = {"a": evaluate_robustness(trained, loader, scans), "b": evaluate_robustness(trained, loader, scans[:1])}
    paths = plot_robustness_curves(results, tmp_path)
    assert set(paths) == {"rotation", "boost"}
    assert all(p.stat().st_size > 1000 for p in paths.values())
    assert results["a"].to_dict()["curves"]["boost"]["aurc"] == results["a"].curves["boost"].aurc
