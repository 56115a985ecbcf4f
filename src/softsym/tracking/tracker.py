"""MLflow bookkeeping: one parent run per job, one nested run per stage, params, tags, artifacts.

Stage metrics are logged to the stage's nested run; the headline ones (``HEADLINE_METRICS``, about 25) are
mirrored onto the parent run, so that the MLflow UI's runs table and compare view show a readable set (the
report merges each job's stage runs). The experiment is tagged as classic ML development so that MLflow 3
opens it on its runs table, and its artifacts live beside a SQLite store (``mlartifacts/``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import mlflow
import numpy as np
from hydra.experimental.callback import Callback
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from softsym.tracking.run_status import end_run, process_tags

log = logging.getLogger(__name__)
_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ ")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used; names the URI."""


# The numbers a job is compared by, mirrored onto its parent run (plus ``eval_<set>_auc`` of each evaluation
# set); every other metric stays on the stage run that measured it.
HEADLINE_METRICS = frozenset({
    "test_auc", "test_auc_se", "test_acc", "test_rej30", "test_rej50", "test_rej50_se", "gap_auc", "train_loss",
    "val_loss", "symmetry_violation", "train_seconds", "model_n_params", "hessian_top_eig", "hessian_trace",
    "hessian_eff_dim", "hessian_goldstone_overlap", "geometric_complexity", "goldstone_direction_error",
    "robust_rotation_aurc", "robust_boost_aurc", "robust_energy_smearing_aurc", "robust_soft_contamination_aurc",
    "robust_pgd_aurc", "student_auc", "student_agreement",
})
# MLflow 3 opens an experiment with this tag on its runs table (not on the GenAI overview).
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
CONFIG_HASH_TAG = "config_hash"


def is_headline(key: str) -> bool:
    return key in HEADLINE_METRICS or (key.startswith("eval_") and key.endswith("_auc"))


def artifact_location(tracking_uri: str) -> str | None:
    """``<directory of the SQLite file>/mlartifacts`` for a SQLite store; None (the server's choice) otherwise."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite" or not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///"):])
    return (db.resolve().parent / "mlartifacts").as_uri()


def finished_job_run(client: MlflowClient, experiment_id: str, config_hash: str,
                     source_commit: str | None = None) -> str | None:
    """The id of a FINISHED parent run of the experiment tagged with ``config_hash`` (and, when given, made by
    the same ``source_commit``, so that results of older code are never silently kept), if there is one."""
    query = f"tags.{CONFIG_HASH_TAG} = '{config_hash}' and attributes.status = 'FINISHED'"
    if source_commit:
        query += f" and tags.`mlflow.source.git.commit` = '{source_commit}' and tags.source_dirty = 'false'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def metric_key(name: str) -> str:
    """MLflow accepts letters, digits and ``_-./ `` in keys; anything else becomes ``_``."""
    return "".join(c if c in _ALLOWED else "_" for c in name)


def check_reachable(tracking_uri: str, timeout: float) -> None:
    """Fail within ``timeout`` seconds when an http(s) tracking server does not answer.

    MLflow's own client retries with back-off for minutes before giving up, so a mistyped port would
    otherwise hang a job (and every job of a sweep) before any work starts.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TrackingError(
            f"MLflow tracking server {tracking_uri} is not reachable ({exc}); start it (make mlflow-server) "
            f"or set mlflow.tracking_uri to a reachable server or to sqlite:///<path>/mlflow.db"
        ) from exc


def prepare_store(tracking_uri: str, experiment_name: str) -> str:
    """Create the store (and its schema) and the experiment once; returns the experiment id."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG[0] not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND_TAG)
        return experiment.experiment_id
    try:
        return client.create_experiment(experiment_name, artifact_location=artifact_location(tracking_uri),
                                        tags=dict([EXPERIMENT_KIND_TAG]))
    except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel job
        return client.get_experiment_by_name(experiment_name).experiment_id


class PrepareTrackingStore(Callback):
    """Hydra callback: creates the tracking store before a multirun launches parallel jobs."""

    def on_multirun_start(self, config, **kwargs) -> None:
        check_reachable(config.mlflow.tracking_uri, config.mlflow.connect_timeout)
        prepare_store(config.mlflow.tracking_uri, config.mlflow.experiment_name)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def bound_http_retries(tracking_uri: str, *, max_retries: int = 2, timeout: float = 15.0) -> None:
    """MLflow's HTTP client retries 7 times with exponential back-off by default (minutes per call);
    bound that for tracking servers, unless the user set it, so our own retry-and-keep logic decides."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(timeout)))


@runtime_checkable
class Tracker(Protocol):
    """What the stages log through: one job (the parent run) holding one nested run per stage."""

    def job(self, *, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any],
            config_yaml: str) -> contextlib.AbstractContextManager[str | None]: ...

    def stage(self, name: str) -> contextlib.AbstractContextManager[str | None]: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_text(self, text: str, name: str, run_id: str | None = None) -> None: ...

    def log_arrays(self, name: str, **arrays: np.ndarray) -> None: ...


class MlflowTracker:
    """Logs one job to MLflow. Use ``with tracker.job(...)`` once, and ``with tracker.stage(name)`` per stage.

    Metrics that cannot be sent (a tracking server that dropped mid-run) never stop the job: they are
    retried on the next call and at the end of the job, and whatever still could not be sent is written
    to ``<spool_dir>/unsent_metrics.jsonl`` and reported.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, *, connect_timeout: float = 5.0,
                 spool_dir: Path | None = None, max_job_hours: float | None = None) -> None:
        check_reachable(tracking_uri, connect_timeout)
        bound_http_retries(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = prepare_store(tracking_uri, experiment_name)
        self.parent_id: str | None = None
        self.stage_id: str | None = None
        self.spool_dir = spool_dir
        self.unsent: list[tuple[str, Metric]] = []
        self.max_job_hours = max_job_hours

    @contextlib.contextmanager
    def job(self, *, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any],
            config_yaml: str) -> Iterator[str]:
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={**tags, **process_tags(self.max_job_hours), "mlflow.runName": run_name})
        self.parent_id = run.info.run_id
        try:
            self._log_params(self.parent_id, params)
            self.log_text(config_yaml, "config.yaml", run_id=self.parent_id)
            yield self.parent_id
        except BaseException as exc:
            self.flush()
            end_run(self.client, self.parent_id, exc)
            raise
        lost = self.flush()
        if lost:  # a job whose metrics are not in the store is not finished: it would be skipped forever
            self.client.set_tag(self.parent_id, "error", f"{lost} metric values could not be sent to the store; "
                                f"kept in {self.spool_dir / 'unsent_metrics.jsonl'}")
            self.client.set_terminated(self.parent_id, RunStatus.to_string(RunStatus.FAILED))
            return
        self.client.set_terminated(self.parent_id, RunStatus.to_string(RunStatus.FINISHED))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[str]:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"mlflow.parentRunId": self.parent_id, "stage": name,
                                           "mlflow.runName": name})
        self.stage_id = run.info.run_id
        try:
            yield self.stage_id
        except BaseException as exc:
            self.flush()
            end_run(self.client, self.stage_id, exc)
            raise
        finally:
            if self.client.get_run(self.stage_id).info.status == "RUNNING":
                self.client.set_terminated(self.stage_id, RunStatus.to_string(RunStatus.FINISHED))
            self.stage_id = None

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [mlflow.entities.Param(metric_key(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    def _targets(self) -> list[str]:
        return [r for r in (self.stage_id, self.parent_id) if r is not None]

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        entries = [Metric(metric_key(k), float(v), now, step or 0) for k, v in metrics.items()]
        for run_id in self._targets():
            headline_only = run_id == self.parent_id and self.stage_id is not None
            self.unsent.extend((run_id, m) for m in entries if not headline_only or is_headline(m.key))
        self._send_pending()

    def _send_pending(self) -> bool:
        """Send every pending metric; on a failure keep the rest for the next attempt. True if all sent."""
        by_run: dict[str, list[Metric]] = {}
        for run_id, metric in self.unsent:
            by_run.setdefault(run_id, []).append(metric)
        sent: set[str] = set()
        try:
            for run_id, entries in by_run.items():
                for start in range(0, len(entries), 1000):
                    self.client.log_batch(run_id, metrics=entries[start:start + 1000])
                sent.add(run_id)
        except Exception as exc:  # noqa: BLE001 - any transport or server error: keep the metrics, go on
            log.warning("could not send metrics to %s (%s); kept for a retry", self.tracking_uri, exc)
        self.unsent = [(r, m) for r, m in self.unsent if r not in sent]
        return not self.unsent

    def flush(self) -> int:
        """Last attempt to send pending metrics; what remains is written next to the job's outputs. Returns
        the number of values that could not be sent."""
        if self._send_pending() or self.spool_dir is None:
            return len(self.unsent)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / "unsent_metrics.jsonl"
        with open(path, "a") as f:
            for run_id, m in self.unsent:
                f.write(json.dumps({"run_id": run_id, "key": m.key, "value": m.value, "timestamp": m.timestamp,
                                    "step": m.step}) + "\n")
        lost = len(self.unsent)
        log.error("%d metric values could not be sent to %s; kept in %s", lost, self.tracking_uri, path)
        self.unsent = []
        return lost

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for run_id in self._targets():
            for k, v in tags.items():
                self.client.set_tag(run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.stage_id or self.parent_id, str(path), artifact_path)

    def log_text(self, text: str, name: str, run_id: str | None = None) -> None:
        self.client.log_text(run_id or self.stage_id or self.parent_id, text, name)

    def log_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """Arrays the report plots (scores, spectra, curves): ``curves/<name>.npz`` on the parent run."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{name}.npz")
            np.savez_compressed(path, **arrays)
            self.client.log_artifact(self.parent_id, path, "curves")


class NullTracker:
    """Logs nothing: the tracker of DDP ranks other than 0 (only rank 0 logs)."""

    tracking_uri = None

    @contextlib.contextmanager
    def job(self, *, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any],
            config_yaml: str) -> Iterator[None]:
        yield None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, name: str, run_id: str | None = None) -> None:
        pass

    def log_arrays(self, name: str, **arrays: np.ndarray) -> None:
        pass
