"""What makes two jobs the same job: the resolved configuration without the keys that only say where outputs
go or how the job is displayed (``VOLATILE_KEYS``), hashed. A job whose hash already has a FINISHED parent run
in the store is skipped (``rerun=true`` runs it again), so a sweep run twice runs only the missing jobs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Dotted keys left out of the hash: output places, the store, display and parallelism settings, the switches
# of resuming itself. Everything else (data, model, penalty, stage options, seed, stages) identifies the job.
VOLATILE_KEYS = ("paths", "rerun", "progress", "threads", "mlflow", "data.cache_dir", "data.n_workers",
                 "data.loader_workers", "train.resume")


def _drop(config: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = config
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def config_hash(resolved: Mapping[str, Any]) -> str:
    """A 16-hex-digit hash of the resolved job configuration (plain containers) without ``VOLATILE_KEYS``."""
    config = json.loads(json.dumps(resolved, default=str))
    for key in VOLATILE_KEYS:
        _drop(config, key)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def finished_run(tracking_uri: str, experiment_name: str, digest: str,
                 source: Mapping[str, str] | None = None) -> str | None:
    """The FINISHED parent run of ``experiment_name`` with this config hash, if the store has one. With the
    job's ``source`` (``tracking.provenance.source_commit``), only a run of the same commit counts, and a
    checkout with uncommitted changes never skips: the code, not only the config, makes the result."""
    from mlflow.tracking import MlflowClient

    from softsym.tracking import finished_job_run

    source = source or {}
    if source.get("source_dirty") == "true":
        return None
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    return finished_job_run(client, experiment.experiment_id, digest, source.get("mlflow.source.git.commit"))
