"""End to end from the command line: JetClass-schema files made with uproot, data + train stages, MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def write_jetclass_like(path: Path, jets, names: dict[str, str] | None = None, tree: str = "tree",
                        classes: tuple[str, ...] = ("QCD", "Tbqq")) -> None:
    """A JetClass-schema TTree as a new user would write it with uproot (``mktree``, jagged branches)."""
    names = names or {}
    n = jets.mask.sum(1)
    def jag(x):
        return ak.unflatten(x[jets.mask], n)
    branches = {
        "part_px": jag(jets.p4[..., 1]), "part_py": jag(jets.p4[..., 2]), "part_pz": jag(jets.p4[..., 3]),
        "part_energy": jag(jets.p4[..., 0]), "part_charge": jag(jets.scalars[..., 0]),
        **{f"label_{c}": (jets.labels == k).astype(np.float32 if c == "QCD" else np.int32)
           for k, c in enumerate(classes)},
        "jet_pt": np.hypot(jets.p4[..., 1].sum(1), jets.p4[..., 2].sum(1)).astype(np.float32),
    }
    branches = {names.get(k, k): v for k, v in branches.items()}
    with uproot.recreate(path) as f:
        f.mktree(tree, {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()})
        f[tree].extend(branches)


def run_softsym(tmp_path: Path, *overrides: str, check: bool = True, multirun: bool = False,
                tracking_uri: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    tracking_uri = tracking_uri or f"sqlite:///{tmp_path}/mlflow.db"
    where = [f"hydra.sweep.dir={tmp_path}/multirun"] if multirun else [f"hydra.run.dir={tmp_path}/run"]
    cmd = [sys.executable, "-m", "softsym", *(["-m"] if multirun else []), f"mlflow.tracking_uri={tracking_uri}",
           *where, f"paths.checkpoints={tmp_path}/ckpt", "threads=1", "train.epochs=2", "train.batch_size=32",
           "model.size=small", "data.max_particles=24", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"softsym failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def jetclass_file(tmp_path_factory):
    from softsym.data.synthetic import synthetic_jets

    path = tmp_path_factory.mktemp("jc") / "jets.root"
    write_jetclass_like(path, synthetic_jets(150, max_particles=24, seed=5))
    return path


def job_metrics(client, parent) -> dict[str, float]:
    """Every metric of a job: its stage runs' and the parent's headline ones (softsym.tracking.HEADLINE_METRICS)."""
    stages = client.search_runs([parent.info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return {k: v for run in [*stages, parent] for k, v in run.data.metrics.items()}


def _runs(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("softsym")
    return client, client.search_runs([exp.experiment_id])


def test_data_and_train_with_lorentz_penalty_log_to_mlflow(tmp_path, jetclass_file):
    run_softsym(tmp_path, "stages=[data,train]", "data=jetclass", f"data.paths=[{jetclass_file}]",
                "model=pfn", "penalty=lorentz")
    client, runs = _runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and {r.data.tags["stage"] for r in children} == {"data", "train"}
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["penalty"] == "lorentz" and parent.data.tags["model"] == "pfn"
    for key in ("test_auc", "test_acc", "test_rej30", "test_rej50", "val_auc", "val_auc_se", "symmetry_violation",
                "data_n_train", "data_signal_frac", "data_dropped_jets", "model_n_params"):
        assert key in job_metrics(client, parent), key
    assert len(client.get_metric_history(parent.info.run_id, "val_loss")) == 2
    assert parent.data.params["penalty.lambda"] == "0.1"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "config.yaml" in artifacts
    train_run = next(r for r in children if r.data.tags["stage"] == "train")
    assert [a.path for a in client.list_artifacts(train_run.info.run_id, "model")] == ["model/model.pt"]


def test_renamed_tree_and_branches_through_the_mapping(tmp_path):
    from softsym.data.synthetic import synthetic_jets

    names = {"part_px": "px", "part_py": "py", "part_pz": "pz", "part_energy": "e", "label_QCD": "is_qcd",
             "label_Tbqq": "is_top"}
    path = tmp_path / "renamed.root"
    write_jetclass_like(path, synthetic_jets(100, max_particles=24, seed=6), names, tree="jets")
    mapping = [f"+data.branches.{k}={v}" for k, v in names.items()]
    run_softsym(tmp_path, "stages=[data,train]", "data=root", f"data.paths=[{path}]", "data.tree=jets",
                *mapping, "penalty=rotation")
    _, runs = _runs(tmp_path)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.metrics["test_auc"] > 0.5


def test_bad_input_is_one_clear_error_and_a_failed_run(tmp_path, jetclass_file):
    proc = run_softsym(tmp_path, "stages=[data]", "data=jetclass", f"data.paths=[{tmp_path}/nothing_*.root]",
                       check=False)
    assert proc.returncode == 2
    assert "nothing_*.root" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_softsym(tmp_path, "stages=[data]", "data=root", f"data.paths=[{jetclass_file}]", "data.tree=jets",
                       check=False)
    assert proc.returncode == 2 and "tree" in proc.stderr and str(jetclass_file) in proc.stderr
    _, runs = _runs(tmp_path)
    assert runs and all(r.info.status == "FAILED" for r in runs if "mlflow.parentRunId" not in r.data.tags)


def test_two_parallel_joblib_jobs_write_every_run_to_a_fresh_sqlite_store(tmp_path, jetclass_file):
    run_softsym(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "stages=[data,train]",
                "data=jetclass", f"data.paths=[{jetclass_file}]", "train.epochs=1", multirun=True)
    client, runs = _runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.data.tags["seed"] for r in parents) == ["0", "1"]
    for parent in parents:
        assert parent.info.status == "FINISHED" and "test_auc" in parent.data.metrics
        stages = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.tags["stage"] for r in stages) == ["data", "train"]
        assert all(r.info.status == "FINISHED" for r in stages)


def test_unreachable_tracking_server_fails_within_seconds_naming_the_uri(tmp_path, jetclass_file):
    import time

    start = time.perf_counter()
    proc = run_softsym(tmp_path, "stages=[data]", "data=jetclass", f"data.paths=[{jetclass_file}]",
                       tracking_uri="http://127.0.0.1:1", check=False)
    assert proc.returncode == 2 and "http://127.0.0.1:1" in proc.stderr
    assert time.perf_counter() - start < 60  # interpreter start-up included; the check itself is 5 s at most


def _torchrun_command(tmp_path: Path, port: int, *overrides: str) -> list[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--nproc_per_node=2", f"--master_port={port}", "-m", "softsym",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run",
            f"paths.checkpoints={tmp_path}/ckpt", "threads=1", "model.size=small", "data.max_particles=24",
            "train.strategy=ddp", *overrides]


def _torchrun(tmp_path: Path, port: int, *overrides: str) -> None:
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    tmp_path.mkdir(exist_ok=True)
    proc = subprocess.run(_torchrun_command(tmp_path, port, *overrides), capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _parent(tmp_path: Path):
    client, runs = _runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    return client, parents[0]


def test_ddp_under_torchrun_matches_single_process(tmp_path, jetclass_file):
    common = ["stages=[data,train]", "data=jetclass", f"data.paths=[{jetclass_file}]", "penalty=lorentz",
              "train.epochs=2", "train.batch_size=32"]
    run_softsym(tmp_path / "single", *common)
    _torchrun(tmp_path / "ddp", 29531, *common)
    client, ddp = _parent(tmp_path / "ddp")
    assert len(client.get_metric_history(ddp.info.run_id, "val_loss")) == 2  # logged once per epoch
    _, single = _parent(tmp_path / "single")
    assert abs(ddp.data.metrics["test_auc"] - single.data.metrics["test_auc"]) <= 0.01


@pytest.mark.timeout(1500)  # two torchrun jobs of up to 600 s each, and the wait for the first checkpoint
def test_ddp_training_killed_after_an_epoch_resumes_to_the_same_result(tmp_path):
    """SIGKILL of the whole torchrun group once rank 0 has written the first checkpoint, then
    train.resume=true: every rank loads it and the run ends where the uninterrupted one does."""
    import signal
    import time

    import torch

    from softsym.data.synthetic import synthetic_jets

    path = tmp_path / "jets.root"
    write_jetclass_like(path, synthetic_jets(1500, max_particles=24, seed=8))  # ~30 steps per epoch
    common = ["stages=[data,train]", "data=jetclass", f"data.paths=[{path}]", "penalty=lorentz", "train.epochs=3",
              "train.batch_size=64", "train.patience=10"]
    _torchrun(tmp_path / "straight", 29535, *common)

    killed = tmp_path / "killed"
    killed.mkdir()
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_torchrun_command(killed, 29537, *common), env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((killed / "ckpt").rglob("last.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (checkpoint,) = (killed / "ckpt").rglob("last.pt")
    assert torch.load(checkpoint, weights_only=False)["epoch"] < 2, "the run ended before it could be killed"

    _torchrun(killed, 29539, *common, "train.resume=true")
    _, straight = _parent(tmp_path / "straight")
    client, runs = _runs(killed)
    resumed = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.status == "FINISHED")
    assert resumed.data.metrics["test_auc"] == pytest.approx(straight.data.metrics["test_auc"], abs=1e-9)
    assert resumed.data.metrics["val_loss"] == pytest.approx(straight.data.metrics["val_loss"], rel=1e-6)


def test_ddp_with_the_streaming_loader(tmp_path):
    """Each rank streams its own file (one class each here): DDP's join evens out their step counts, the
    averaged gradient still mixes the classes, and the test AUC is that of a single process."""
    common = ["stages=[data,train]", "data=jetclass", f"data.paths=[{FIXTURES / 'rootio'}/*]", "data.stream=true",
              "train.epochs=3", "train.batch_size=16"]
    run_softsym(tmp_path / "single", *common)
    _torchrun(tmp_path / "ddp", 29533, *common)
    client, ddp = _parent(tmp_path / "ddp")
    assert job_metrics(client, ddp)["data_streamed"] == 1.0
    assert len(client.get_metric_history(ddp.info.run_id, "val_loss")) == 3
    _, single = _parent(tmp_path / "single")
    print("streaming test_auc: ddp", ddp.data.metrics["test_auc"], "single", single.data.metrics["test_auc"])
    assert abs(ddp.data.metrics["test_auc"] - single.data.metrics["test_auc"]) <= 0.05


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("form,stream", [("rootio", "false"), ("mktree", "false"), ("rntuple", "false"),
                                         ("parquet", "false"), ("rootio", "true")])
def test_trains_on_every_file_form_one_process_per_file(tmp_path, form, stream):
    run_softsym(tmp_path, "stages=[data,train]", "data=jetclass", f"data.paths=[{FIXTURES / form}/*]",
                f"data.stream={stream}", "train.epochs=1", "data.max_particles=32")
    client, runs = _runs(tmp_path)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    m = job_metrics(client, parent)
    assert parent.info.status == "FINISHED" and "test_auc" in m
    for split in ("train", "val", "test"):
        assert abs(m[f"data_signal_frac_{split}"] - m["data_signal_frac"]) <= 0.05


JETCLASS_CLASSES = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")


def test_ten_class_selection_logs_per_class_metrics(tmp_path):
    from softsym.data.jets import JetArrays
    from softsym.data.synthetic import synthetic_jets

    paths = []
    for k, name in enumerate(JETCLASS_CLASSES):  # one process per file, as in JetClass
        jets = synthetic_jets(30, max_particles=24, seed=10 + k)
        keep = jets.labels == min(k, 1)
        jets = JetArrays(jets.p4[keep], jets.mask[keep], np.full(int(keep.sum()), k), jets.scalars[keep],
                         jets.class_names, jets.scalar_names)
        path = tmp_path / f"{name}_000.root"
        write_jetclass_like(path, jets, classes=JETCLASS_CLASSES)
        paths.append(str(path))
    run_softsym(tmp_path, "stages=[data,train]", "data=jetclass", f"data.paths=[{','.join(paths)}]",
                f"data.classes=[{','.join(JETCLASS_CLASSES)}]", "train.epochs=1")
    client, runs = _runs(tmp_path)
    m = job_metrics(client, next(r for r in runs if "mlflow.parentRunId" not in r.data.tags))
    assert {f"test_auc_{c}" for c in JETCLASS_CLASSES[1:]} <= set(m)
    assert {"test_rej50_Tbqq", "test_rej99_Hqql", "test_rej50_Wqq", "test_acc"} <= set(m)


def test_all_five_stages_log_their_metrics_and_plots(tmp_path, jetclass_file):
    run_softsym(tmp_path, "data=jetclass", f"data.paths=[{jetclass_file}]", "penalty=rotation", "train.epochs=1",
                "complexity.eval_jets=32", "complexity.hessian.k=4", "complexity.hessian.k_bottom=2",
                "complexity.hessian.trace_matvecs=12", "complexity.hessian.slq_probes=1",
                "complexity.hessian.slq_steps=12", "complexity.goldstone.quadrature_steps=6",
                "complexity.compress.sparsities=[0.0,0.5]", "complexity.compress.bits=[8]",
                "~robustness.perturbations.pgd", "~robustness.perturbations.fgsm",
                "robustness.perturbations.rotation.strengths=[0.0,0.5]", "distill.epochs=1", "distill.eval_every=2")
    client, runs = _runs(tmp_path)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED"
    m = job_metrics(client, parent)
    expected = {"hessian_top_eig", "hessian_trace", "hessian_trace_se", "hessian_near_zero_frac", "hessian_neg_frac",
                "hessian_eff_dim", "hessian_goldstone_overlap", "geometric_complexity", "prune_auc_at_0.5",
                "quant_auc_8bit", "compressed_bits", "robust_rotation_auc_0.5", "robust_rotation_aurc",
                "robust_boost_auc_0.5", "student_auc", "student_agreement", "student_kl", "student_steps_to_95"}
    assert expected <= set(m), expected - set(m)
    assert m["robust_rotation_auc_0"] == pytest.approx(m["test_auc"])  # strength 0 is the clean test set
    curves = {a.path for a in client.list_artifacts(parent.info.run_id, "curves")}
    assert {"curves/test_scores.npz", "curves/hessian_spectrum.npz", "curves/distill_curve.npz"} <= curves


def _no_runs(tmp_path: Path) -> bool:
    """True when the job created no MLflow run (the store may not even exist)."""
    if not (tmp_path / "mlflow.db").exists():
        return True
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("softsym")
    return exp is None or not client.search_runs([exp.experiment_id])


@pytest.mark.parametrize("overrides,named", [
    (["train.epochs=0"], "train.epochs=0"),
    (["train.epoch=3"], "did you mean train.epochs"),
    (["penalty.lambda=abc"], "penalty.lambda='abc'"),
])  # every other option: tests/test_config_check.py, in-process
def test_a_bad_option_is_refused_before_any_work_and_any_mlflow_run(tmp_path, jetclass_file, overrides, named):
    proc = run_softsym(tmp_path, "data=jetclass", f"data.paths=[{jetclass_file}]", *overrides, check=False)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert _no_runs(tmp_path) and not (tmp_path / "ckpt").exists()


def test_jetclass_without_paths_is_refused_before_any_mlflow_run(tmp_path):
    proc = run_softsym(tmp_path, "stages=[data,train]", "data=jetclass", check=False)
    assert proc.returncode == 2 and "data.paths" in proc.stderr and "Traceback" not in proc.stderr
    assert _no_runs(tmp_path)


def _softsym_command(tmp_path: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "softsym", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"hydra.run.dir={tmp_path}/run", f"paths.checkpoints={tmp_path}/ckpt", "threads=1", "model.size=small",
            "data.max_particles=24", *overrides]


def test_sigterm_mid_training_leaves_the_runs_killed_not_running(tmp_path):
    """What `timeout`, SLURM and submitit send: the job ends with 128 + SIGTERM, its parent and stage runs
    are KILLED with the signal named, and the epochs logged before it are kept."""
    import signal
    import time

    from softsym.data.synthetic import synthetic_jets

    path = tmp_path / "jets.root"
    write_jetclass_like(path, synthetic_jets(1500, max_particles=24, seed=9))
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_softsym_command(tmp_path, "stages=[data,train]", "data=jetclass", f"data.paths=[{path}]",
                                             "train.epochs=100", "train.patience=100", "train.batch_size=32"),
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "ckpt").rglob("last.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be signalled"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and "Traceback" not in stderr
    client, runs = _runs(tmp_path)
    status = {r.data.tags.get("stage", "job"): r.info.status for r in runs}
    assert status == {"job": "KILLED", "data": "FINISHED", "train": "KILLED"}, status
    for run in runs:
        if run.info.status == "KILLED":
            assert "SIGTERM" in run.data.tags["error"]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["pid"] == str(proc.pid)
    assert len(client.get_metric_history(parent.info.run_id, "val_loss")) >= 1


def test_resume_says_when_it_starts_afresh_and_names_a_corrupt_checkpoint(tmp_path, jetclass_file):
    common = ["stages=[data,train]", "data=jetclass", f"data.paths=[{jetclass_file}]", "train.epochs=1",
              "train.resume=true"]
    run_softsym(tmp_path, *common)
    client, runs = _runs(tmp_path)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["resumed"] == "false" and "no checkpoint at" in parent.data.tags["resume_note"]

    (checkpoint,) = (tmp_path / "ckpt").rglob("last.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    # another eval batch size: the same checkpoint, but not the same job (a finished job would be skipped)
    proc = run_softsym(tmp_path, *common, "train.eval_batch_size=512", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(checkpoint) in proc.stderr and "corrupt" in proc.stderr and "train.resume=false" in proc.stderr
