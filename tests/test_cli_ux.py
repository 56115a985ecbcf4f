"""What a user meets: per-jet predictions, sweeps that resume, outputs in the working directory, a user's
sweep replacing an experiment's grid, the help text, the progress decision and the MLflow layout."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
FILES = f"data.paths=[{FIXTURES / 'mktree'}/*]"
TINY = ["threads=1", "train.epochs=1", "train.batch_size=32", "model.size=small", "data.max_particles=24"]


def softsym(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "softsym", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"softsym failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def parent_runs(db: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return client, [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


# --- 1. per-jet predictions -------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_writes_root_predictions_with_observers_as_train_stage_artifacts(tmp_path):
    softsym(tmp_path, "stages=[data,train]", "data=jetclass", FILES, "data.observers=[jet_energy]",
            "predictions.format=root", *TINY)
    (path,) = (tmp_path / "outputs").rglob("predictions/test.root")
    with uproot.open(path) as f:
        table = f["predictions"].arrays(library="np")
    assert {"score_QCD", "score_Tbqq", "label", "jet_pt", "jet_eta", "jet_phi", "jet_sdmass", "jet_nparticles",
            "jet_energy"} <= set(table)
    assert np.allclose(table["score_QCD"] + table["score_Tbqq"], 1, atol=1e-5)
    assert set(np.unique(table["label"])) == {0, 1}
    # jet_pt comes from the files' branch; the fixtures have no jet_sdmass, so it is computed (> 0 GeV)
    with uproot.open(FIXTURES / "mktree" / "QCD_000.root") as f:
        file_pt = f["tree"]["jet_pt"].array(library="np")
    assert np.isin(table["jet_pt"][table["label"] == 0], file_pt.astype(np.float32)).all()
    assert (table["jet_sdmass"] > 0).all() and (table["jet_nparticles"] >= 1).all()
    client, (parent,) = parent_runs(tmp_path / "mlflow.db", "softsym")
    train = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = "
                               f"'{parent.info.run_id}' and tags.stage = 'train'")
    assert [a.path for a in client.list_artifacts(train[0].info.run_id, "predictions")] == ["predictions/test.root"]


def test_prediction_columns_computed_from_constituents_match_a_direct_sum(tmp_path):
    from softsym.data.synthetic import synthetic_jets
    from softsym.training.predictions import jet_observables, prediction_columns, read_predictions, write_predictions

    jets = synthetic_jets(20, max_particles=24, seed=3)
    observed = jet_observables(jets)
    for j in range(len(jets)):
        real = jets.p4[j][jets.mask[j]].astype(np.float64)
        e, px, py, pz = real.sum(0)
        pt = np.hypot(px, py)
        assert observed["jet_pt"][j] == pytest.approx(pt, rel=1e-9)
        assert observed["jet_eta"][j] == pytest.approx(np.arcsinh(pz / pt), abs=1e-9)
        assert observed["jet_phi"][j] == pytest.approx(np.arctan2(py, px), abs=1e-9)
        assert observed["jet_nparticles"][j] == len(real)
        assert 0 <= observed["jet_sdmass"][j] <= np.sqrt(max(e**2 - px**2 - py**2 - pz**2, 0)) + 1e-6
    probs = np.random.default_rng(0).dirichlet([1, 1], len(jets))
    path = write_predictions(tmp_path / "test", prediction_columns(jets.labels, probs, jets.class_names, observed))
    back = read_predictions(path)
    assert path.suffix == ".parquet" and np.array_equal(back["label"], jets.labels)
    assert np.allclose(back["score_Tbqq"], probs[:, 1], atol=1e-7)
    read = jets.subset(np.arange(len(jets)))
    with_file = type(jets)(read.p4, read.mask, read.labels, read.scalars, read.class_names, read.scalar_names,
                           {"jet_pt": np.full(len(jets), 7.0)})
    assert (jet_observables(with_file)["jet_pt"] == 7.0).all()  # what the files hold wins


# --- 2 and 4. a sweep run twice; the user's sweep replaces the experiment's grid ------------------------

@pytest.mark.slow
def test_sweep_run_twice_skips_every_job_and_a_typed_sweep_replaces_the_smoke_grid(tmp_path):
    sweep = ["-m", "experiment=smoke", "data=jetclass", FILES, "data.n_jets_per_class=20", "seed=0,1",
             "stages=[data]", "threads=1"]
    softsym(tmp_path, *sweep)
    _, first = parent_runs(tmp_path / "mlflow.db", "smoke")
    assert sorted(r.data.tags["seed"] for r in first) == ["0", "1"]  # 2 jobs, not the grid's 8 times 2
    assert {r.data.tags["model"] for r in first} == {"pfn"}
    client = parent_runs(tmp_path / "mlflow.db", "smoke")[0]
    for run in first:  # smoke limits the jets read from the user's files: 20 per class
        data = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")[0]
        m = data.data.metrics  # jets counted by label; those without constituents are dropped
        assert sum(m[f"data_n_{s}"] for s in ("train", "val", "test")) + m["data_dropped_jets"] == 40
    proc = softsym(tmp_path, *sweep)
    _, second = parent_runs(tmp_path / "mlflow.db", "smoke")
    assert {r.info.run_id for r in second} == {r.info.run_id for r in first}
    log = proc.stdout + proc.stderr
    assert log.count("skipped: this configuration finished") == 2
    softsym(tmp_path, *sweep[1:-3], "seed=0", "stages=[data]", "threads=1", "rerun=true")  # one job, forced
    _, third = parent_runs(tmp_path / "mlflow.db", "smoke")
    assert len(third) == 3


def test_a_sweep_with_a_bad_job_starts_no_job_and_names_each_bad_one(tmp_path):
    proc = softsym(tmp_path, "-m", "experiment=smoke", "data=jetclass", FILES, "stages=[data]", "seed=0,1",
                   "train.epochs=2,0", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "2 of 4 jobs of the sweep have bad options; no job was started" in proc.stderr
    assert proc.stderr.count("job #1 ") == 1  # said once
    bad = [line for line in proc.stderr.splitlines() if line.strip().startswith("job #")]
    assert [line.split()[1] for line in bad] == ["#1", "#3"]
    assert all("train.epochs=0" in line and "hydra" not in line.split(":", 1)[1] for line in bad)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() or not parent_runs(tmp_path / "mlflow.db", "smoke")[1]


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    from softsym.cli import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_a_command_line_sweep_replaces_the_experiments_grid():
    from softsym.config.sweeper import job_overrides

    cfg = _compose("experiment=smoke")
    grid = cfg.hydra.sweeper.params
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.softsym_sweeper.GridSweeper"
    n_grid = int(np.prod([len(str(v).split(",")) for v in grid.values()]))
    assert len(job_overrides(grid, ["experiment=smoke"])) == n_grid > 4
    jobs = job_overrides(grid, ["experiment=smoke", "penalty=none,lorentz", "seed=0,1"])
    assert jobs == [["experiment=smoke", f"penalty={p}", f"seed={s}"] for p in ("none", "lorentz") for s in (0, 1)]
    # single values keep the grid (and override a key of it)
    assert len(job_overrides(grid, ["experiment=smoke", "train.epochs=1"])) == n_grid
    with_search = _compose("experiment=smoke", "hparams_search=lambda_sweep").hydra.sweeper.params
    assert "model" in with_search and len(str(with_search["penalty.lambda"]).split(",")) == 5


def test_smoke_limits_the_jets_read_from_files():
    cfg = _compose("experiment=smoke", "data=jetclass", "data.paths=[x.root]")
    assert cfg.data.max_jets_per_class == cfg.data.n_jets_per_class


# --- 3. outputs where the user works -----------------------------------------------------------------------

OUTPUT_PLACES = ("mlflow.db", "mlruns", "mlartifacts", "outputs", "multirun", "checkpoints", "reports", "data")


def _output_files() -> set[Path]:
    found = {p for p in ROOT.iterdir() if p.name not in (".git", ".venv")}
    for place in OUTPUT_PLACES:
        if (ROOT / place).is_dir():
            found |= set((ROOT / place).rglob("*"))
    return found


@pytest.mark.slow
def test_a_run_from_an_empty_directory_writes_nothing_into_the_checkout(tmp_path):
    before = _output_files()
    softsym(tmp_path, "stages=[data,train]", "data=jetclass", FILES, *TINY)
    assert _output_files() == before
    assert {"mlflow.db", "mlartifacts", "outputs", "checkpoints"} <= {p.name for p in tmp_path.iterdir()}
    client, (parent,) = parent_runs(tmp_path / "mlflow.db", "softsym")
    assert client.get_experiment(parent.info.experiment_id).artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert (tmp_path / "mlartifacts" / parent.info.run_id / "artifacts" / "config.yaml").exists()
    tags = parent.data.tags
    assert tags["input_n_files"] == "2" and "QCD_000.root" in tags["input_files"] and len(tags["config_hash"]) == 16
    if (ROOT / ".git").exists():
        assert len(tags["mlflow.source.git.commit"]) == 40
    assert len(parent.data.metrics) <= 25 and "test_auc" in parent.data.metrics
    assert "data_n_train" not in parent.data.metrics  # stays on the data stage's run


# --- 5. help ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_help_says_what_softsym_does_with_groups_and_examples(tmp_path):
    out = softsym(tmp_path, "--help").stdout
    assert out.startswith("softsym: does a soft symmetry penalty")
    assert "powered by Hydra" not in out and "memory_budget_gb" not in out  # no config dump
    for stage in ("data", "train", "complexity", "robustness", "distill"):
        assert f"\n  {stage} " in out
    groups = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith(" "))
    assert groups["penalty"] == "boost, gc, lorentz, none, rotation"
    assert {"paper", "smoke"} <= set(groups["experiment"].split(", ")) and "pfn" in groups["model"]
    examples = [line for line in out.splitlines() if line.strip().startswith("softsym ")]
    assert len(examples) == 5 and "--cfg job" in out
    assert len(out.splitlines()) < 60
    assert "memory_budget_gb" in softsym(tmp_path, "--cfg", "job").stdout


# --- 6. MLflow layout ------------------------------------------------------------------------------------

def test_parent_run_keeps_headline_metrics_and_the_experiment_opens_on_runs(tmp_path):
    from softsym.tracking import EXPERIMENT_KIND_TAG, HEADLINE_METRICS, MlflowTracker

    assert len(HEADLINE_METRICS) <= 25
    tracker = MlflowTracker(f"sqlite:///{tmp_path}/store/mlflow.db", "ui")
    with tracker.job(run_name="j", tags={}, params={}, config_yaml="") as parent_id:
        with tracker.stage("train") as stage_id:
            tracker.log_metrics({"test_auc": 0.9, "test_auc_Hbb": 0.8, "eval_shifted_auc": 0.7})
    client = tracker.client
    assert set(client.get_run(parent_id).data.metrics) == {"test_auc", "eval_shifted_auc"}
    assert set(client.get_run(stage_id).data.metrics) == {"test_auc", "test_auc_Hbb", "eval_shifted_auc"}
    experiment = client.get_experiment(tracker.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG[0]] == EXPERIMENT_KIND_TAG[1]
    assert experiment.artifact_location == (tmp_path / "store" / "mlartifacts").as_uri()


def test_config_hash_ignores_output_places_and_display_settings():
    from softsym.config.job_key import config_hash

    job = {"seed": 0, "model": {"name": "pfn"}, "paths": {"root": "/a"}, "rerun": False, "progress": "auto",
           "mlflow": {"tracking_uri": "sqlite:////a/mlflow.db"}, "data": {"cache_dir": "/a/cache", "n": 1},
           "train": {"resume": False, "epochs": 2}}
    moved = {**job, "paths": {"root": "/b"}, "rerun": True, "progress": False, "mlflow": {"tracking_uri": "x"},
             "data": {"cache_dir": "/b/cache", "n": 1}, "train": {"resume": True, "epochs": 2}}
    assert config_hash(job) == config_hash(moved)
    assert config_hash(job) != config_hash({**job, "seed": 1})
    assert config_hash(job) != config_hash({**job, "train": {"resume": False, "epochs": 3}})


# --- 7. progress -----------------------------------------------------------------------------------------

class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("setting,ci,tty,expected", [
    ("auto", None, True, "bar"), ("auto", None, False, "lines"), ("auto", "true", True, "off"),
    ("auto", "1", False, "off"), ("auto", "false", True, "bar"), ("auto", "0", False, "lines"),
    ("auto", "", True, "bar"), (True, "true", False, "lines"), (True, "true", True, "bar"),
    (False, None, True, "off"), ("false", None, True, "off"), ("true", None, False, "lines"),
])
def test_progress_mode(setting, ci, tty, expected):
    from softsym.progress import progress_mode

    environ = {} if ci is None else {"CI": ci}
    assert progress_mode(setting, environ=environ, stream=_Stream(tty)) == expected


def test_progress_lines_are_plain_lines_and_disabled_prints_nothing():
    from softsym.progress import progress_bar

    stream = _Stream(False)
    items = list(progress_bar(range(3), desc="steps", mode="lines", stream=stream, min_interval=0.0))
    assert items == [0, 1, 2]
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and [line.split(" it")[0] for line in lines] == [
        "steps: 1/3", "steps: 2/3", "steps: 3/3"]
    quiet = _Stream(False)
    with progress_bar(total=5, disable=True, stream=quiet) as bar:
        bar.update(5)
        bar.set_postfix(loss=1.0)
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="progress"):
        from softsym.progress import progress_mode

        progress_mode("sometimes")
