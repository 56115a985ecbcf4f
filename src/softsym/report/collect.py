"""Read a study's parent runs (and their artifacts) out of MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from softsym.tracking.run_status import reported_status

# Parameters of the job's resolved config the report reads: the dataset's pT window (plot legends), the
# training-set size of a learning-curve point and the weight decay of the weight-decay control.
DATASET_PARAMS = ("data.pt_min", "data.pt_max", "data.max_train_jets", "train.weight_decay")


def parent_runs(client: MlflowClient, experiment_name: str) -> pd.DataFrame:
    """One row per job (parent run): status, group tags, the dataset tag and pT window, every metric, start/end
    times."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        known = [e.name for e in client.search_experiments()]
        raise ValueError(f"MLflow experiment {experiment_name!r} not found in {client.tracking_uri}; found {known}")
    rows = []
    stage_metrics: dict[str, dict[str, float]] = {}  # parent run id -> its stage runs' metrics
    page = None
    while True:
        runs = client.search_runs([experiment.experiment_id], max_results=1000, page_token=page)
        for run in runs:
            tags = run.data.tags
            if "mlflow.parentRunId" in tags:
                stage_metrics.setdefault(tags["mlflow.parentRunId"], {}).update(run.data.metrics)
                continue
            if tags.get("stage") == "report":
                continue
            status, error = reported_status(run)  # a stale RUNNING run (killed by SIGKILL) is FAILED
            rows.append({
                "run_id": run.info.run_id, "run_name": run.info.run_name, "status": status,
                "model": tags.get("model", "?"), "penalty": tags.get("penalty", "?"),
                "lambda": tags.get("lambda", "0"), "form": tags.get("form", ""), "seed": tags.get("seed", "?"),
                "data": tags.get("data", ""), "control": tags.get("control", "none"),
                "config_hash": tags.get("config_hash", ""), "error": error, "start_time": run.info.start_time,
                "end_time": run.info.end_time,
                **{k: run.data.params[k] for k in DATASET_PARAMS if k in run.data.params},
                **run.data.metrics,
            })
        page = runs.token
        if not page:
            break
    # The parent run holds only the headline metrics (softsym.tracking.HEADLINE_METRICS); the rest are on its
    # stage runs.
    rows = [{**stage_metrics.get(row["run_id"], {}), **row} for row in rows]
    return pd.DataFrame(rows)


def download_npz(client: MlflowClient, run_id: str, artifact: str, dest: Path) -> dict[str, np.ndarray] | None:
    """An ``.npz`` artifact of a run as a dict, or None if the run has none."""
    try:
        path = client.download_artifacts(run_id, artifact, str(dest))
    except Exception:  # noqa: BLE001 - a missing artifact is normal for runs without that stage
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
