"""The study's data plumbing: stratified nested subsamples, the training-size limit, evaluation sets and their
seeds, the generation options that keep earlier cache names, the study-arm tags, transfer sets."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
from omegaconf import OmegaConf

from softsym.data.errors import DataError
from softsym.data.eval_sets import eval_set_seed, eval_set_settings, load_eval_sets
from softsym.data.pythia import GenerationConfig
from softsym.data.splits import load_splits
from softsym.data.stratify import stratified_subsample
from softsym.data.synthetic import synthetic_jets
from softsym.distill import matched_epochs
from softsym.training.eval_sets import evaluate_eval_sets, gap_metrics
from tests.test_cli import write_jetclass_like


def test_stratified_subsample_is_proportional_nested_and_seeded():
    labels = np.array([0] * 700 + [1] * 300)
    np.random.default_rng(0).shuffle(labels)
    previous = np.array([], dtype=int)
    for n in (10, 37, 100, 333, 999):
        idx = stratified_subsample(labels, n, seed=4)
        assert len(idx) == n and np.all(np.diff(idx) > 0)
        assert abs((labels[idx] == 1).sum() - 0.3 * n) <= 1  # each class within one jet of its share
        assert set(previous) <= set(idx)  # nested: a learning curve's smaller set is inside the larger
        previous = idx
    assert np.array_equal(stratified_subsample(labels, 100, seed=4), stratified_subsample(labels, 100, seed=4))
    assert not np.array_equal(stratified_subsample(labels, 100, seed=4), stratified_subsample(labels, 100, seed=5))
    assert not np.array_equal(stratified_subsample(labels, 100, seed=4, stream=1),
                              stratified_subsample(labels, 100, seed=4))
    assert np.array_equal(stratified_subsample(labels, None, seed=0), np.arange(1000))
    # not the first jets: class-sorted input still gives both classes
    ordered = np.sort(labels)
    assert (ordered[stratified_subsample(ordered, 50, seed=0)] == 1).sum() == 15


@pytest.fixture(scope="module")
def jets_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "jets.root"
    write_jetclass_like(path, synthetic_jets(400, max_particles=16, seed=11))
    return str(path)


def test_max_train_jets_limits_only_the_training_split(jets_file):
    full = load_splits([jets_file], max_particles=16, seed=3)
    for n in (40, 100):
        limited = load_splits([jets_file], max_particles=16, seed=3, max_train_jets=n)
        assert len(limited.train) == n
        for split in ("val", "test"):
            assert np.array_equal(getattr(limited, split).p4, getattr(full, split).p4)
        # a subset of the full training split, class proportions kept
        rows = {r.tobytes() for r in full.train.p4}
        assert all(r.tobytes() in rows for r in limited.train.p4)
        assert abs((limited.train.labels == 1).mean() - (full.train.labels == 1).mean()) <= 1.5 / n
        assert limited.metrics()["data_n_train"] == n
        assert limited.metrics()["data_n_train_available"] == len(full.train)


def test_a_split_sample_is_stratified_not_the_first_jets(jets_file):
    splits = load_splits([jets_file], max_particles=16, seed=3)
    sample = splits.arrays("test", max_jets=20)
    share = (splits.test.labels == 1).mean()
    assert len(sample) == 20 and abs((sample.labels == 1).sum() - 20 * share) <= 1
    assert np.array_equal(sample.p4, splits.arrays("test", max_jets=20).p4)


def test_eval_set_settings_merge_seed_and_check():
    data = {"source": "pythia", "generation_seed": 0, "n_jets_per_class": 100, "pt_min": 550.0, "pt_max": 650.0,
            "cache_dir": "/tmp/c", "detector": {"enabled": True, "photon_res_stochastic": 0.05},
            "classes": ["QCD", "Tbqq"], "max_particles": 32, "eval_sets": {"x": {}}}
    source, low = eval_set_settings(data, "pt_low", {"pt_min": 350, "pt_max": 450})
    assert source == "pythia" and (low["pt_min"], low["pt_max"], low["pt_min"]) == (350, 450, 350)
    assert "eval_sets" not in low and low["cache_dir"] == "/tmp/c"
    seeds = {eval_set_seed(0, name) for name in ("pt_low", "pt_high", "no_mpi")}
    assert low["generation_seed"] == eval_set_seed(0, "pt_low") and len(seeds) == 3 and 0 not in seeds
    assert eval_set_seed(1, "pt_low") != eval_set_seed(0, "pt_low")
    _, wide = eval_set_settings(data, "wide", {"detector": {"photon_res_stochastic": 0.1}})
    assert wide["detector"] == {"enabled": True, "photon_res_stochastic": 0.1}  # merged key by key
    assert data["detector"]["photon_res_stochastic"] == 0.05  # the training data's settings are untouched
    _, fixed = eval_set_settings(data, "same", {"generation_seed": 7})
    assert fixed["generation_seed"] == 7
    source, files = eval_set_settings(data, "mine", {"paths": ["a.root"]})
    assert source == "files" and files["paths"] == ["a.root"]
    with pytest.raises(DataError, match="pt_minn"):
        eval_set_settings(data, "typo", {"pt_minn": 300})
    with pytest.raises(DataError, match="cache_dir"):
        eval_set_settings({"source": "files", "paths": ["a"]}, "gen", {"source": "pythia", "n_jets_per_class": 5})


def test_eval_sets_from_files_are_whole_or_a_stratified_sample(jets_file, tmp_path):
    other = tmp_path / "other.root"
    jets = synthetic_jets(90, max_particles=16, seed=12)
    write_jetclass_like(other, jets)
    data = {"source": "files", "paths": [jets_file], "classes": ["QCD", "Tbqq"], "max_particles": 16,
            "eval_sets": {"whole": {"paths": [str(other)]}, "part": {"paths": [str(other)], "max_jets": 30}}}
    sets = load_eval_sets(data, scalar_names=("part_charge",))
    assert len(sets["whole"]) == len(jets) and len(sets["part"]) == 30
    assert abs((sets["part"].labels == 1).sum() - 30 * (sets["whole"].labels == 1).mean()) <= 1
    with pytest.raises(DataError, match="part_isPhoton"):
        load_eval_sets(data, scalar_names=("part_charge", "part_isPhoton"))


def test_eval_set_metrics_and_the_gap_with_its_error(jets_file):
    import torch

    from softsym.models import MODELS

    splits = load_splits([jets_file], max_particles=16, seed=3)
    torch.manual_seed(0)
    model = MODELS.build("pfn", n_features=8, n_classes=2, phi_sizes=[8], latent_dim=4, head_sizes=[8])
    metrics, predictions = evaluate_eval_sets(model, {"a": splits.val, "b": splits.test}, class_names=("QCD", "Tbqq"),
                                              batch_size=64, reference_auc=0.9, reference_auc_se=0.01)
    for name in ("a", "b"):
        for key in ("auc", "auc_se", "rej30", "rej30_se", "rej50", "rej50_se", "gap", "gap_se"):
            assert f"eval_{name}_{key}" in metrics, key
        assert metrics[f"eval_{name}_gap"] == pytest.approx(0.9 - metrics[f"eval_{name}_auc"])
        assert metrics[f"eval_{name}_gap_se"] == pytest.approx(math.hypot(0.01, metrics[f"eval_{name}_auc_se"]))
    assert np.array_equal(predictions["b"][0], splits.test.labels)
    assert gap_metrics({"x_auc": 0.8}, "x_", 0.85, None) == {"x_gap": pytest.approx(0.05)}


def test_new_generation_options_keep_earlier_cache_names():
    config = GenerationConfig(n_jets_per_class=10)
    described = config.describe()
    before = set(asdict(config)) - {"fsr_alpha_s"} | {"format_version", "versions"}
    assert set(described) == before  # the hashed description of an existing config is unchanged
    shifted = GenerationConfig(n_jets_per_class=10, fsr_alpha_s=0.12)
    assert shifted.describe()["fsr_alpha_s"] == 0.12 and shifted.key != config.key
    assert GenerationConfig(n_jets_per_class=10, mpi=False).key != config.key
    with pytest.raises(DataError, match="fsr_alpha_s"):
        GenerationConfig(n_jets_per_class=10, fsr_alpha_s=0.5)


def test_pythia_accepts_the_fsr_alpha_s_setting():
    from softsym.data.pythia.events import make_pythia

    pythia = make_pythia(GenerationConfig(n_jets_per_class=1, fsr_alpha_s=0.11, mpi=False), "qcd", 5)
    assert pythia.settings.parm("TimeShower:alphaSvalue") == pytest.approx(0.11)


def test_study_tags_name_the_arms():
    from softsym.stages.options import study_tags

    def cfg(name, lam, wd=1e-4):
        return OmegaConf.create({"penalty": {"name": name, "lambda": lam},
                                 "train": {"weight_decay": wd, "baseline_weight_decay": 1e-4}})
    assert study_tags(cfg("none", 0.0)) == {"group": "baseline", "control": "none"}
    assert study_tags(cfg("lorentz", 0.0)) == {"group": "baseline", "control": "none"}
    assert study_tags(cfg("lorentz", 0.1)) == {"group": "symmetry", "control": "none"}
    assert study_tags(cfg("gc", 0.01)) == {"group": "control", "control": "gc"}
    assert study_tags(cfg("none", 0.0, wd=0.05)) == {"group": "control", "control": "weight_decay"}


def test_transfer_sets_and_matched_steps():
    from softsym.stages.distill import transfer_sizes

    assert transfer_sizes(None) == ([None], None)
    assert transfer_sizes([500, None, 2000]) == ([500, None, 2000], None)
    assert transfer_sizes([500, 2000]) == ([500, 2000], 2000)
    assert matched_epochs(5, 10000, 1000) == 50 and matched_epochs(5, 10000, 10000) == 5


def test_learning_curve_points_and_plot(tmp_path):
    import pandas as pd

    from softsym.report.learning_curves import learning_curve_points, plot_learning_curves

    rows = [{"model": "pfn", "penalty": p, "lambda": lam, "seed": s, "data_n_train": n,
             "test_auc": 0.9 - 30 / n + 0.001 * s, "eval_pt_low_auc": 0.85 - 30 / n}
            for p, lam in (("none", "0.0"), ("lorentz", "0.01")) for s in range(3) for n in (600, 2000, 20000)]
    runs = pd.DataFrame(rows)
    points = learning_curve_points(runs, "test_auc")
    assert len(points) == 6 and (points["n"] == 3).all()
    first = points[(points.penalty == "none") & (points.data_n_train == 600)].iloc[0]
    assert first["mean"] == pytest.approx(0.9 - 0.05 + 0.001) and first["se"] == pytest.approx(0.001 / np.sqrt(3))
    path = plot_learning_curves(runs, tmp_path / "lc.png")
    assert path.stat().st_size > 1000
    assert plot_learning_curves(runs[runs.data_n_train == 600], tmp_path / "none.png") is None
