"""The report: verdict rule, aggregation, and a summary from a real MLflow store (failed runs listed)."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from softsym.report.claims import claims_table, verdict, with_group_columns
from softsym.report.cli import write_report


def test_verdict_rule():
    assert verdict(0.05, 0.01, 3, 3, +1) == "supported"
    assert verdict(-0.05, 0.01, 3, 3, +1) == "not supported"
    assert verdict(0.015, 0.01, 3, 3, +1) == "inconclusive"
    assert verdict(-0.05, 0.01, 3, 3, -1) == "supported"
    assert verdict(0.05, 0.0, 1, 3, +1) == "inconclusive"  # one seed decides nothing


def test_lambda_zero_is_the_baseline_and_claims_compare_against_it():
    runs = pd.DataFrame({
        "model": ["pfn"] * 6, "penalty": ["lorentz"] * 6, "lambda": ["0.0"] * 3 + ["1.0"] * 3,
        "seed": [0, 1, 2] * 2, "test_auc": [0.90, 0.91, 0.92, 0.95, 0.96, 0.97],
        "hessian_trace": [10.0, 11.0, 12.0, 10.5, 11.5, 12.5],
    })
    table = claims_table(with_group_columns(runs))
    auc = table[table.metric == "test_auc"].iloc[0]
    assert auc.penalty == "lorentz" and auc["lambda"] == 1.0 and auc.delta == pytest.approx(0.05)
    assert auc.verdict == "supported"
    assert table[table.metric == "hessian_trace"].iloc[0].verdict == "inconclusive"


def test_report_from_mlflow_lists_failed_runs_and_writes_plots(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("study")
    rng = np.random.default_rng(0)
    for lam in (0.0, 0.1):
        for seed in range(2):
            run = client.create_run(exp, run_name=f"pfn-{lam}-{seed}", tags={
                "model": "pfn", "penalty": "lorentz", "lambda": str(lam), "seed": str(seed)})
            rid = run.info.run_id
            for name, value in {"test_auc": 0.9 + lam + 0.01 * seed, "robust_rotation_auc_0.0": 0.9,
                                "robust_rotation_auc_1.0": 0.8 + lam, "robust_rotation_aurc": 0.85 + lam,
                                "prune_auc_at_0.5": 0.88, "prune_auc_at_0.9": 0.7}.items():
                client.log_metric(rid, name, value)
            labels = rng.integers(0, 2, 200)
            path = tmp_path / "test_scores.npz"
            np.savez(path, labels=labels, probs=np.stack([1 - labels * 0.6, labels * 0.6 + 0.2], 1))
            client.log_artifact(rid, str(path), "curves")
            client.set_terminated(rid)
    broken = client.create_run(exp, run_name="pfn-broken", tags={"model": "pfn", "penalty": "lorentz",
                                                                   "lambda": "1.0", "seed": "0",
                                                                   "error": "DataError: bad file"})
    client.set_terminated(broken.info.run_id, "FAILED")

    summary = write_report(client, "study", tmp_path / "report")
    text = summary.read_text()
    assert "pfn-broken" in text and "DataError: bad file" in text
    assert "supported" in text and "Verdict rule" in text
    assert {"roc.png", "robust_rotation.png", "prune.png"} <= {p.name for p in (tmp_path / "report").iterdir()}
