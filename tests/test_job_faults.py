"""Jobs that end badly: a signal marks the runs KILLED and keeps what was logged; a run left RUNNING by a
SIGKILL is reported as failed; a save onto a full disk leaves no temporary and names ENOSPC and the path.
(SIGTERM of a real training from the command line: tests/test_cli.py.)"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
import uuid

import pytest
import torch
from mlflow.tracking import MlflowClient

from softsym.atomic import AtomicWriteError, write_text_atomic
from softsym.tracking import MlflowTracker
from softsym.tracking.interrupts import JobInterrupted, interrupt_on_signals
from softsym.tracking.run_status import process_alive, stale_run_reason
from softsym.training.loop import save_checkpoint


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_marks_the_job_and_stage_runs_killed_and_keeps_the_metrics(store, signum):
    experiment = f"signal-{uuid.uuid4().hex[:6]}"
    tracker = MlflowTracker(store, experiment)
    before = signal.getsignal(signum)
    with pytest.raises(JobInterrupted) as caught, interrupt_on_signals():
        with tracker.job(run_name="job", tags={"model": "pfn"}, params={}, config_yaml=""):
            with tracker.stage("train"):
                tracker.log_metrics({"val_loss": 0.5}, step=0)
                os.kill(os.getpid(), signum)
                time.sleep(10)  # the handler raises here
    assert caught.value.signum == signum and caught.value.exit_code == 128 + signum
    assert signal.getsignal(signum) == before  # the handlers are put back
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert {r.info.status for r in runs} == {"KILLED"} and len(runs) == 2
    for run in runs:
        assert signal.Signals(signum).name in run.data.tags["error"]
        assert run.data.metrics["val_loss"] == 0.5
        assert run.data.tags.get("mlflow.parentRunId") or run.data.tags["pid"] == str(os.getpid())


def test_a_run_whose_process_is_gone_or_that_ran_too_long_is_reported_failed(store):
    from softsym.report.collect import parent_runs

    experiment = f"stale-{uuid.uuid4().hex[:6]}"
    tracker = MlflowTracker(store, experiment, max_job_hours=2)
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not process_alive(dead.pid) and process_alive(os.getpid())
    client = tracker.client
    host = __import__("socket").gethostname()
    now = int(time.time() * 1000)

    def running(name, start_time, **tags):
        return client.create_run(tracker.experiment_id, run_name=name, start_time=start_time,
                                 tags={"model": name, **tags}).info.run_id

    killed = running("killed", now, host=host, pid=str(dead.pid))  # SIGKILLed: nothing could mark it
    alive = running("alive", now, host=host, pid=str(os.getpid()))
    elsewhere = running("elsewhere", now, host="another-node", pid="1")  # cannot be checked: young, so alive
    old = running("old", now - 3 * 3_600_000, host="another-node", pid="1", max_job_hours="2")
    ancient = running("ancient", now - 100 * 3_600_000)  # no tags: the default limit (72 h)
    rows = parent_runs(client, experiment).set_index("run_id")
    assert rows.loc[killed, "status"] == "FAILED" and f"process {dead.pid}" in rows.loc[killed, "error"]
    assert rows.loc[old, "status"] == "FAILED" and "max_job_hours=2" in rows.loc[old, "error"]
    assert rows.loc[ancient, "status"] == "FAILED" and "max_job_hours=72" in rows.loc[ancient, "error"]
    assert rows.loc[alive, "status"] == "RUNNING" and rows.loc[elsewhere, "status"] == "RUNNING"
    assert stale_run_reason(client.get_run(alive)) is None


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (skipped where mounting is not permitted)."""
    where = tmp_path / "small"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # lazy: a failed writer may still hold a handle


@pytest.mark.parametrize("save", ["checkpoint", "text"])
def test_a_save_onto_a_full_disk_leaves_no_temporary_and_names_enospc_and_the_path(full_disk, save):
    path = full_disk / "ckpt" / ("last.pt" if save == "checkpoint" else "summary.md")
    with pytest.raises(AtomicWriteError) as caught:
        if save == "checkpoint":  # torch reports a full disk as "unexpected pos ..."
            save_checkpoint({"weights": torch.zeros(100_000)}, path)
        else:
            write_text_atomic(path, "x" * 200_000)
    assert caught.value.errno == errno.ENOSPC
    assert str(path) in str(caught.value) and "ENOSPC" in str(caught.value)
    assert list(path.parent.iterdir()) == []  # neither the target nor a temporary holding the space
