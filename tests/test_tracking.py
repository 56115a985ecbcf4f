"""MLflow bookkeeping: a dropped server never kills a job; a live tracking server takes 4 concurrent jobs."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from softsym.tracking import MlflowTracker, NullTracker, Tracker, TrackingError, check_reachable


def test_metrics_survive_a_server_that_drops_and_comes_back(tmp_path, monkeypatch):
    tracker = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db", "drops", spool_dir=tmp_path)
    real = tracker.client.log_batch

    def down(*args, **kwargs):
        raise ConnectionError("server went away")

    with tracker.job(run_name="job", tags={}, params={"a": 1}, config_yaml="a: 1\n") as parent:
        with tracker.stage("train"):
            monkeypatch.setattr(tracker.client, "log_batch", down)
            tracker.log_metrics({"val_loss": 0.5}, step=0)  # no exception: kept
            assert tracker.unsent
            monkeypatch.setattr(tracker.client, "log_batch", real)
            tracker.log_metrics({"val_loss": 0.4}, step=1)  # both sent now
            assert not tracker.unsent
    history = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(parent, "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.4)]


def test_metrics_that_can_never_be_sent_are_kept_on_disk(tmp_path, monkeypatch):
    tracker = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db", "gone", spool_dir=tmp_path)
    with tracker.job(run_name="job", tags={}, params={}, config_yaml=""):
        monkeypatch.setattr(tracker.client, "log_batch", lambda *a, **k: (_ for _ in ()).throw(OSError("down")))
        tracker.log_metrics({"test_auc": 0.9})
    kept = [json.loads(line) for line in (tmp_path / "unsent_metrics.jsonl").read_text().splitlines()]
    assert {k["key"] for k in kept} == {"test_auc"}
    # its metrics are not in the store, so the job is not FINISHED (a resumed sweep runs it again)
    run = tracker.client.get_run(tracker.parent_id)
    assert run.info.status == "FAILED" and "could not be sent" in run.data.tags["error"]


@pytest.mark.parametrize("implementation", [MlflowTracker, NullTracker])
def test_both_trackers_implement_the_tracker_protocol(tmp_path, implementation):
    tracker = (implementation(f"sqlite:///{tmp_path}/mlflow.db", "protocol") if implementation is MlflowTracker
               else implementation())
    assert isinstance(tracker, Tracker)
    members = [name for name in vars(Tracker) if not name.startswith("_") and callable(getattr(Tracker, name))]
    assert {"job", "stage", "log_metrics", "set_tags", "log_artifact", "log_text", "log_arrays"} <= set(members)
    for name in members:  # same parameters, in the same order, as the protocol declares
        declared = list(inspect.signature(getattr(Tracker, name)).parameters)
        assert list(inspect.signature(getattr(implementation, name)).parameters) == declared, name
    assert not hasattr(tracker, "log_figure")


def test_closed_port_is_reported_within_seconds():
    start = time.perf_counter()
    with pytest.raises(TrackingError, match="127.0.0.1:1"):
        check_reachable("http://127.0.0.1:1", 2.0)
    assert time.perf_counter() - start < 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path):
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination",
         str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                check_reachable(uri, 1.0)
                MlflowClient(uri).search_experiments()
                break
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 90 s")
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_four_concurrent_jobs_against_a_live_tracking_server(tmp_path, tracking_server):
    from softsym.data.synthetic import synthetic_jets
    from tests.test_cli import ROOT, write_jetclass_like

    path = tmp_path / "jets.root"
    write_jetclass_like(path, synthetic_jets(60, max_particles=16, seed=2))
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "softsym", f"mlflow.tracking_uri={tracking_server}", "mlflow.experiment_name=live",
         f"hydra.run.dir={tmp_path}/run{seed}", f"paths.checkpoints={tmp_path}/ckpt", "threads=1",
         "stages=[data,train]", "data=jetclass", f"data.paths=[{path}]", "data.max_particles=16",
         "train.epochs=1", "train.batch_size=32", f"seed={seed}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in range(4)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    client = MlflowClient(tracking_server)
    runs = client.search_runs([client.get_experiment_by_name("live").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 4 and all(r.info.status == "FINISHED" for r in parents)
    for parent in parents:
        assert "test_auc" in parent.data.metrics
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.tags["stage"] for r in children) == ["data", "train"]
        assert "config.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
