"""Robustness perturbations keep what they should, strength 0 is clean, PGD beats random noise."""

import math
import re
from pathlib import Path

import numpy as np
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
                      "collinear_split": 3, "constituent_loss": 0.3, "pileup": 10}


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
    strengths = {**MOMENTUM_STRENGTHS, "feature_noise": 0.1, "fgsm": 0.05, "pgd": 0.05, "p4_pgd": 0.05}
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


# --- inside/outside the group, the jet cone, the 4-vector adversary, the endpoints -----------------------------

def test_perturbations_are_inside_exactly_the_groups_that_contain_them():
    inside = {s: {n for n in PERTURBATIONS if PERTURBATIONS.build(n).relation(s) == "inside"}
              for s in ("rotation", "boost", "lorentz", None)}
    assert inside["rotation"] == {"rotation"}
    assert inside["boost"] == {"boost"}
    assert inside["lorentz"] == {"rotation", "boost", "transverse_boost"}
    assert inside[None] == set()
    physical_outside = {n for n in PERTURBATIONS if PERTURBATIONS.build(n).physical} - inside["lorentz"]
    assert physical_outside == {"energy_scale", "energy_smearing", "angular_smearing", "soft_contamination",
                                "collinear_split", "constituent_loss", "pileup"}


def test_particles_leaving_the_cone_after_a_boost_are_dropped_and_counted(batch):
    """A boost of rapidity -1 along the jet axis widens the jets; every particle that was inside ΔR < R and is
    outside after is dropped, counted one by one against an independent computation on the boosted jets."""
    from softsym.physics import act, axis_boost_generator, exp_generator

    radius = 0.4
    plain = PERTURBATIONS.build("boost")
    coned = PERTURBATIONS.build("boost", jet_radius=radius)
    boosted = plain(batch, -1.0, _gen())  # the same jets, nothing dropped
    out, dropped = coned.apply(batch, -1.0, _gen())

    def delta_r(p4, mask):
        p4, mask = p4.numpy(), mask.numpy()
        jet = (p4 * mask[..., None]).sum(1)
        eta = lambda v: np.arcsinh(v[..., 3] / np.hypot(v[..., 1], v[..., 2]))  # noqa: E731
        phi = lambda v: np.arctan2(v[..., 2], v[..., 1])  # noqa: E731
        with np.errstate(invalid="ignore", divide="ignore"):
            dphi = (phi(p4) - phi(jet)[:, None] + np.pi) % (2 * np.pi) - np.pi
            return np.where(mask, np.hypot(eta(p4) - eta(jet)[:, None], dphi), 0.0)

    # slot by slot (no re-sorting), so every particle keeps its index
    g = exp_generator(axis_boost_generator(jet_axis(batch.p4, batch.mask)), torch.full((len(batch),), -1.0,
                                                                                          dtype=torch.float64))
    moved = act(g, batch.p4)
    before, after = delta_r(batch.p4, batch.mask), delta_r(moved, batch.mask)
    leaves = batch.mask.numpy() & (before < radius) & (after >= radius)
    hardest = np.argmax(np.where(batch.mask.numpy(), torch.hypot(moved[..., 1], moved[..., 2]).numpy(), -1), 1)
    leaves[np.arange(len(batch)), hardest] = False  # the hardest particle always stays
    assert leaves.sum() > 20  # the check has teeth
    assert torch.equal(dropped, torch.as_tensor(leaves.sum(1)))
    assert torch.equal(out.mask.sum(1), boosted.mask.sum(1) - dropped)
    kept = delta_r(out.p4, out.mask)
    assert np.isfinite(kept).all()
    # a particle outside the cone before the boost is not dropped by it
    assert (out.mask.sum(1) >= torch.as_tensor((batch.mask.numpy() & (before >= radius)).sum(1))).all()
    # and in the robustness metrics as a fraction of the real particles
    loader = [batch]
    model = MODELS.build("pfn", n_features=8, n_classes=2, phi_sizes=[8], latent_dim=4, head_sizes=[8]).double()
    result = evaluate_robustness(model, loader, [PerturbationScan(coned, (0.0, -1.0))])
    frac = result.metrics()["robust_boost_dropped_frac_-1"]
    assert frac == pytest.approx(leaves.sum() / batch.mask.sum().item())
    assert result.metrics()["robust_boost_dropped_frac_0"] == 0.0


def test_four_vector_adversary_keeps_masses_and_bounds_and_recomputes_features(trained, batch):
    import copy

    from softsym.robustness import particle_masses

    eps = 0.05
    model = copy.deepcopy(trained).double()
    attack = PERTURBATIONS.build("p4_pgd", steps=3)
    out = attack.attack(model, batch, eps, _gen())
    real = batch.mask
    shift = (out.p4[..., 1:] - batch.p4[..., 1:]).norm(dim=-1)
    bound = eps * batch.p4[..., 1:].norm(dim=-1)
    assert (shift[real] <= bound[real] * (1 + 1e-9) + 1e-12).all()
    assert (shift[real] > 0.5 * bound[real]).float().mean() > 0.5  # the bound is used, not ignored
    mass_before, mass_after = particle_masses(batch.p4), particle_masses(out.p4)
    # masses kept to float64 precision: m² = E² − |p|² cancels, so compare m² on the scale of E²
    assert ((mass_after**2 - mass_before**2).abs() <= 1e-12 * out.p4[..., 0] ** 2)[real].all()
    heavy = real & (mass_before > 0.1)
    assert heavy.sum() > 10 and ((mass_after - mass_before).abs() < 1e-9)[heavy].all()
    assert (out.p4[~real] == batch.p4[~real]).all()
    # the logits the adversary scores are those of the features of the moved 4-vectors
    logits, dropped = attack.perturbed(model, batch, eps, _gen())
    coned = PERTURBATIONS.build("p4_pgd", steps=3)
    resorted = coned(batch, 0.0, _gen())
    assert resorted is batch and (dropped == 0).all()
    from softsym.robustness.perturbations import keep_hardest
    expected = keep_hardest(out, batch.mask.shape[1])
    features = compute_features(expected.p4, expected.mask, expected.scalars)
    with torch.no_grad():
        assert torch.allclose(logits, model(features, expected.p4, expected.mask), atol=1e-10)
    # and it hurts more than random momentum noise of the same size
    with torch.no_grad():
        clean = signal_score(logits_of(model, batch))
        attacked = signal_score(logits)
        random_moves = PERTURBATIONS.build("p4_pgd", steps=1, step_factor=0.0)
        noisy = signal_score(random_moves.perturbed(model, batch, eps, _gen())[0])
    assert (attacked - clean).abs().mean() > 2 * (noisy - clean).abs().mean()


def logits_of(model, b):
    from softsym.models import logits_from_p4
    return logits_from_p4(model, b.p4, b.mask, b.scalars)


def test_pileup_adds_a_poisson_number_of_soft_massive_particles(batch):
    from softsym.robustness import particle_masses

    empty = JetBatch(torch.zeros(4000, 80, 4, dtype=torch.float64), torch.zeros(4000, 80, dtype=bool),
                     torch.zeros(4000, dtype=torch.long), torch.zeros(4000, 80, 0, dtype=torch.float64))
    empty.p4[:, 0] = torch.tensor([500.0, 500.0, 0.0, 0.0], dtype=torch.float64)
    empty.mask[:, 0] = True
    out = PERTURBATIONS.build("pileup", pt_mean=0.7, radius=0.8)(empty, 10.0, _gen())
    added = out.mask.sum(1) - 1
    mean = 10.0 * math.pi * 0.64
    assert added.double().mean().item() == pytest.approx(mean, rel=0.02)
    assert added.double().var().item() == pytest.approx(mean, rel=0.1)  # Poisson: variance = mean
    soft = out.mask.clone()
    soft[:, 0] = False
    assert particle_masses(out.p4)[soft].sub(0.13957).abs().max() < 1e-6
    pt = torch.hypot(out.p4[..., 1], out.p4[..., 2])[soft]
    assert pt.mean().item() == pytest.approx(0.7, rel=0.02)


def test_auc_losses_have_delong_errors_that_match_a_bootstrap():
    from softsym.robustness import auc_loss, mean_auc_loss
    from softsym.training.metrics import delong_auc

    rng = np.random.default_rng(0)
    n = 1500
    labels = rng.integers(0, 2, n)
    clean = labels + rng.normal(0, 1.0, n)
    curves = [[clean + rng.normal(0, s, n) for s in (0.5, 1.0)], [clean * 0.5 + rng.normal(0, 0.8, n)]]
    # one score vector: the DeLong error of the AUC itself
    from softsym.robustness import auc_contrast
    value, se = auc_contrast(labels, [clean], [1.0])
    assert (value, se) == pytest.approx(delong_auc(labels, clean))
    loss, loss_se = auc_loss(labels, clean, curves[0])
    endpoint, endpoint_se = mean_auc_loss(labels, clean, curves)
    from sklearn.metrics import roc_auc_score

    def direct(idx):
        a = lambda s: roc_auc_score(labels[idx], s[idx])  # noqa: E731
        one = a(clean) - np.mean([a(s) for s in curves[0]])
        two = a(clean) - np.mean([a(s) for s in curves[1]])
        return one, (one + two) / 2

    assert (loss, endpoint) == pytest.approx(direct(np.arange(n)), abs=1e-12)
    boot = np.array([direct(rng.integers(0, n, n)) for _ in range(300)])
    assert loss_se == pytest.approx(boot[:, 0].std(), rel=0.2)
    assert endpoint_se == pytest.approx(boot[:, 1].std(), rel=0.2)


def test_outside_endpoint_uses_only_physical_perturbations_outside_the_group(trained, toy_jets):
    loader = InMemoryLoader(toy_jets, batch_size=64)
    scans = scans_from_config({"rotation": {"strengths": [0, 1.0]}, "energy_smearing": {"strengths": [0, 0.3]},
                               "pileup": {"strengths": [0, 20]}, "pgd": {"strengths": [0, 0.05]}}, jet_radius=0.8)
    result = evaluate_robustness(trained, loader, scans, seed=1, symmetry="lorentz")
    m = result.metrics()
    assert m["robust_rotation_inside"] == 1.0 and m["robust_pileup_inside"] == 0.0
    assert m["robust_outside_n"] == 2 and m["robust_inside_n"] == 1
    mean_loss = (m["robust_energy_smearing_auc_loss"] + m["robust_pileup_auc_loss"]) / 2
    assert m["robust_outside_auc_loss"] == pytest.approx(mean_loss, abs=1e-12)
    assert m["robust_inside_auc_loss"] == pytest.approx(m["robust_rotation_auc_loss"], abs=1e-12)
    assert m["robust_energy_smearing_auc_loss"] == pytest.approx(
        result.clean_auc - m["robust_energy_smearing_auc_0.3"], abs=1e-12)
    assert 0 < m["robust_outside_auc_loss_se"] < 0.1
    assert "robust_rotation_dropped_frac_1" in m and "robust_pgd_dropped_frac_0.05" not in m
    assert evaluate_robustness(trained, loader, scans, seed=1, symmetry="rotation").metrics()[
        "robust_outside_n"] == 2  # the feature attack is never in the physical endpoint
    # Classed by every symmetry too: a boost-penalised run's baseline is measured on the boost's outside set,
    # in which the rotation lies.
    assert m["robust_outside_auc_loss_lorentz"] == m["robust_outside_auc_loss"]
    assert m["robust_outside_n_boost"] == 3 and m["robust_inside_n_rotation"] == 1
    with_rotation = (m["robust_energy_smearing_auc_loss"] + m["robust_pileup_auc_loss"]
                     + m["robust_rotation_auc_loss"]) / 3
    assert m["robust_outside_auc_loss_boost"] == pytest.approx(with_rotation, abs=1e-12)
    assert 0 < m["robust_outside_auc_loss_boost_se"] < 0.1
    assert "robust_inside_auc_loss_boost" not in m  # nothing physical lies inside the boost's group here
