"""The report: verdict rule, aggregation, and a summary from a real MLflow store (failed runs listed)."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from softsym.report.claims import CLAIMS_CSV_COLUMNS, claims_table, with_group_columns
from softsym.report.cli import log_report, main, write_report
from softsym.report.correlations import CORRELATIONS_CSV_COLUMNS
from softsym.report.statistics import verdict


def test_verdict_rule():
    assert verdict(0.05, 0.01, +1, alpha=0.05) == "supported"
    assert verdict(-0.05, 0.01, +1, alpha=0.05) == "contradicted"
    assert verdict(0.015, 0.2, +1, alpha=0.05) == "inconclusive"
    assert verdict(-0.05, 0.01, -1, alpha=0.05) == "supported"
    assert verdict(0.05, float("nan"), +1, alpha=0.05) == "inconclusive"  # one pair decides nothing
    assert verdict(0.05, 0.03, +1, alpha=0.01) == "inconclusive"


def test_lambda_zero_is_the_baseline_and_claims_compare_against_it():
    runs = pd.DataFrame({
        "model": ["pfn"] * 6, "penalty": ["lorentz"] * 6, "lambda": ["0.0"] * 3 + ["1.0"] * 3,
        # differences 0.049, 0.050, 0.051: consistent but not tied (tied differences have no t statistic)
        "seed": [0, 1, 2] * 2, "test_auc": [0.90, 0.91, 0.92, 0.949, 0.96, 0.971],
        "hessian_trace": [10.0, 11.0, 12.0, 12.0, 10.0, 11.5],
    })
    table = claims_table(with_group_columns(runs))
    auc = table[table.metric == "test_auc"].iloc[0]
    assert auc.penalty == "lorentz" and auc["lambda"] == 1.0 and auc.delta == pytest.approx(0.05)
    assert auc.n_pairs == 3 and auc.scale == "linear"
    assert auc.verdict == "supported"
    trace = table[table.metric == "hessian_trace"].iloc[0]
    assert trace.scale == "log" and trace.verdict == "inconclusive"


def _spectrum(rng, shift):
    grid = np.linspace(-1.0, 50.0 + shift, 400)
    density = np.exp(-0.5 * ((grid - rng.uniform(0, 1)) / 0.3) ** 2) + 1e-300
    return {"grid": grid, "density": density / np.trapezoid(density, grid)}


def test_report_from_mlflow_lists_failed_runs_and_writes_plots(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("study")
    rng = np.random.default_rng(0)
    for lam in (0.0, 0.1):
        for seed in range(4):  # four pairs: consistent, not tied, differences (a tie has no t statistic)
            run = client.create_run(exp, run_name=f"pfn-{lam}-{seed}", tags={
                "model": "pfn", "penalty": "lorentz", "lambda": str(lam), "seed": str(seed), "data": "pythia"})
            rid = run.info.run_id
            client.log_param(rid, "data.pt_min", "550.0")
            client.log_param(rid, "data.pt_max", "650.0")
            for name, value in {"test_auc": 0.9 + lam * (1 + 0.02 * seed) + 0.01 * seed, "test_auc_se": 0.01,
                                "test_rej30": 50.0, "test_rej30_se": 10.0, "test_rej30_n_bkg": 19.0,
                                "geometric_complexity": 2.0 - 5 * lam + 0.1 * seed, "gap_auc": 0.05 - lam / 4,
                                "robust_rotation_auc_0.0": 0.9,
                                "robust_rotation_auc_1.0": 0.8 + lam, "robust_rotation_aurc": 0.85 + lam,
                                "prune_auc_at_0.5": 0.88, "prune_auc_at_0.9": 0.7}.items():
                client.log_metric(rid, name, value)
            labels = rng.integers(0, 2, 200)
            path = tmp_path / "test_scores.npz"
            np.savez(path, labels=labels, probs=np.stack([1 - labels * 0.3 - 0.5 * rng.random(200),
                                                          labels * 0.3 + 0.5 * rng.random(200)], 1))
            client.log_artifact(rid, str(path), "curves")
            path = tmp_path / "hessian_spectrum.npz"
            np.savez(path, **_spectrum(rng, seed))
            client.log_artifact(rid, str(path), "curves")
            client.set_terminated(rid)
    broken = client.create_run(exp, run_name="pfn-broken", tags={"model": "pfn", "penalty": "lorentz",
                                                                   "lambda": "1.0", "seed": "0",
                                                                   "error": "DataError: bad file"})
    client.set_terminated(broken.info.run_id, "FAILED")

    out = tmp_path / "report"
    summary = write_report(client, "study", out)
    text = summary.read_text()
    assert "pfn-broken" in text and "DataError: bad file" in text
    assert "supported" in text and "Verdict rule" in text and "Holm–Bonferroni" in text
    assert "`test_rej30` rests on 19 background jets passing the cut (< 100) in 8 of 8 runs (2 groups: " in text
    assert text.count("rests on") == 1  # one line per metric, not per group
    made = {p.name for p in out.iterdir()}
    assert {"roc.png", "robust_rotation.png", "prune.png", "hessian_spectrum.png", "claims.csv",
            "correlations.csv", "strengths.csv", "correlation_geometric_complexity.png"} <= made
    claims = pd.read_csv(out / "claims.csv")
    assert tuple(claims.columns) == CLAIMS_CSV_COLUMNS
    assert set(claims["verdict"]) <= {"supported", "contradicted", "inconclusive"}
    assert (claims.set_index("metric").loc["test_auc", "verdict"]) == "supported"
    correlations = pd.read_csv(out / "correlations.csv")
    assert tuple(correlations.columns) == CORRELATIONS_CSV_COLUMNS
    gc_gap = correlations[(correlations.complexity == "geometric_complexity") & (correlations.outcome == "gap_auc")]
    assert len(gc_gap) == 1 and gc_gap.n_runs.iloc[0] == 8 and gc_gap.rho.iloc[0] > 0.7

    run_id = log_report(client, "study", out)
    logged = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"report/claims.csv", "report/correlations.csv", "report/summary.md"} <= logged


def test_report_cli_takes_option_overrides_and_rejects_bad_ones(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("study")
    for lam in (0.0, 1.0):
        for seed in range(3):
            rid = client.create_run(exp, tags={"model": "pfn", "penalty": "gc", "lambda": str(lam),
                                               "seed": str(seed)}).info.run_id
            client.log_metric(rid, "test_auc", 0.9 + 0.001 * lam + 0.01 * seed)
            client.set_terminated(rid)
    main(["--experiment", "study", "--tracking-uri", uri, "--out", str(tmp_path / "r"), "--no-log",
          "report.alpha=0.01"])
    assert "α = 0.01" in (tmp_path / "r" / "summary.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["--experiment", "study", "--tracking-uri", uri, "--out", str(tmp_path / "r"), "--no-log",
              "report.nonsense=1"])
    assert exit_info.value.code == 2 and "unknown report option" in capsys.readouterr().err
