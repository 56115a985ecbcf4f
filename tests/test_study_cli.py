"""End to end: evaluation sets (one generated at another pT window, one from files) logged by every evaluating
stage; ``data.max_train_jets`` leaves the test and evaluation jets identical; ``experiment=full`` composes and
one of its jobs runs at tiny size."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli import _runs, run_softsym, write_jetclass_like

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from softsym.data.synthetic import synthetic_jets

    where = tmp_path_factory.mktemp("study_cli")
    train, other = where / "train.root", where / "other.root"
    write_jetclass_like(train, synthetic_jets(150, max_particles=24, seed=5))
    write_jetclass_like(other, synthetic_jets(60, max_particles=24, seed=8))
    return where, train, other


def _eval_set_overrides(where: Path, other: Path) -> list[str]:
    generated = (f"+data.eval_sets.pt_350_450={{source: pythia, pt_min: 350, pt_max: 450, n_jets_per_class: 12, "
                 f"jets_per_shard: 12, mpi: false, n_workers: 1, cache_dir: '{where}/cache'}}")
    return [generated, f"+data.eval_sets.mine={{paths: ['{other}']}}"]


def _stage_metrics(tmp_path: Path) -> dict[str, dict[str, float]]:
    client, runs = _runs(tmp_path)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED"
    return {r.data.tags["stage"]: r.data.metrics for r in runs if "mlflow.parentRunId" in r.data.tags}


def test_two_eval_sets_are_logged_by_every_evaluating_stage_and_max_train_jets_keeps_them(tmp_path, files):
    where, train, other = files
    common = ["stages=[data,train,robustness,distill]", "data=jetclass", f"data.paths=[{train}]",
              *_eval_set_overrides(where, other), "train.epochs=1", "~robustness.perturbations.pgd",
              "~robustness.perturbations.fgsm", "~robustness.perturbations.p4_pgd",
              "robustness.eval_set_perturbations=[energy_smearing]", "distill.epochs=1", "distill.eval_every=2",
              "distill.transfer_jets=[40,null]"]
    run_softsym(tmp_path / "all", *common)
    stages = _stage_metrics(tmp_path / "all")
    for name in ("pt_350_450", "mine"):
        assert stages["data"][f"data_eval_{name}_n"] > 0
        train_m = stages["train"]
        for key in ("auc", "auc_se", "rej30", "rej30_se", "rej50", "rej50_se", "gap", "gap_se"):
            assert f"eval_{name}_{key}" in train_m, (name, key)
        assert train_m[f"eval_{name}_gap"] == pytest.approx(train_m["test_auc"] - train_m[f"eval_{name}_auc"])
        robust = stages["robustness"]
        assert robust[f"robust_eval_{name}_auc"] == pytest.approx(train_m[f"eval_{name}_auc"])
        assert f"robust_eval_{name}_energy_smearing_auc_loss" in robust
        assert f"robust_eval_{name}_outside_auc_loss" in robust
        student = stages["distill"]
        for key in ("auc", "agreement", "kl"):
            assert f"student_eval_{name}_{key}" in student and f"student_transfer_40_eval_{name}_{key}" in student
        assert student[f"teacher_eval_{name}_auc"] == pytest.approx(train_m[f"eval_{name}_auc"])
    assert stages["robustness"]["robust_outside_auc_loss_se"] > 0
    assert stages["distill"]["student_transfer_40_transfer_jets"] == 40
    assert stages["distill"]["teacher_auc"] == pytest.approx(stages["train"]["test_auc"])

    # a smaller training split: the same test and evaluation jets, predictions on them jet by jet
    run_softsym(tmp_path / "small", *common[:1], *common[1:], "data.max_train_jets=60", "stages=[data,train]")
    small = _stage_metrics(tmp_path / "small")
    assert small["data"]["data_n_train"] == 60 < stages["data"]["data_n_train"]
    assert small["data"]["data_n_test"] == stages["data"]["data_n_test"]
    for part in ("test", "pt_350_450", "mine"):
        a = pd.read_parquet(tmp_path / "all" / "run" / "predictions" / f"{part}.parquet")
        b = pd.read_parquet(tmp_path / "small" / "run" / "predictions" / f"{part}.parquet")
        jets = ["label", "jet_pt", "jet_eta", "jet_phi", "jet_nparticles"]
        assert len(a) > 10 and a[jets].equals(b[jets]), part


def test_full_experiment_composes_and_one_job_runs_at_tiny_size(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=full"], return_hydra_config=True)
    assert cfg.data.n_jets_per_class * cfg.data.splits[0] >= 100_000 and cfg.data.max_particles == 128
    params = cfg.hydra.sweeper.params
    assert {"particlenet", "transformer"} <= set(str(params.model).split(","))
    assert len(str(params.seed).split(",")) >= 10 and cfg.data.eval_sets
    tiny = ["data.n_jets_per_class=40", "data.jets_per_shard=40", "data.eval_jets_per_class=8", "data.max_particles=16",
            "data.mpi=false", "data.n_workers=1", f"data.cache_dir={tmp_path}/cache", "train.epochs=1",
            "model=particlenet", "model.size=small", "arm=lorentz_matched"]
    proc = run_softsym(tmp_path, "experiment=full", "mlflow.experiment_name=softsym", *tiny,
                       "stages=[data,train]", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = _stage_metrics(tmp_path)
    assert any(k.startswith("eval_") and k.endswith("_auc") for k in stages["train"])
