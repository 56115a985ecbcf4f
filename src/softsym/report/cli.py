"""``softsym-report``: turn an MLflow experiment's runs into ``reports/<experiment>/summary.md`` and plots."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from softsym.report import plots
from softsym.report.claims import (
    GROUP_KEYS,
    aggregate,
    claims_table,
    family_verdicts,
    fmt,
    with_group_columns,
)
from softsym.report.collect import download_npz, parent_runs

PROJECT_ROOT = Path(__file__).resolve().parents[3]
HEADLINE = ("test_auc", "test_rej30", "test_rej50", "gap_auc", "symmetry_violation", "hessian_top_eig",
            "hessian_trace", "hessian_near_zero_frac", "hessian_eff_dim", "hessian_goldstone_overlap",
            "hessian_goldstone_excess",
            "geometric_complexity", "compressed_bits", "student_auc", "student_agreement", "student_kl",
            "student_steps_to_95")
VERDICT_RULE = (
    "Verdict rule: for each model, every penalised group (penalty, λ > 0) is compared with the unpenalised "
    "group (λ = 0) of the same model. Δ = mean(penalised) − mean(baseline) over seeds, "
    "SE = sqrt(s²_pen/n_pen + s²_base/n_base). The claim is **supported** if Δ lies in the claimed "
    "direction by more than 2 SE, **not supported** if it lies in the opposite direction by more than 2 SE, "
    "and **inconclusive** otherwise or with fewer than 2 seeds per group."
)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    metrics = [m for m in HEADLINE if m in runs.columns]
    agg = aggregate(runs, metrics)
    rows = []
    for key in agg.index:
        row = dict(zip(GROUP_KEYS, key, strict=True))
        row["lambda"] = f"{row['lambda']:g}"
        row["seeds"] = int(agg.loc[key, ("n", metrics[0])]) if metrics else 0
        for m in metrics:
            row[m] = fmt(agg.loc[key, ("mean", m)], agg.loc[key, ("std", m)])
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(client: MlflowClient, experiment: str, out_dir: Path) -> Path:
    runs = parent_runs(client, experiment)
    if runs.empty:
        raise ValueError(f"MLflow experiment {experiment!r} has no runs yet")
    # A re-run of the same job (model, penalty, λ, form, seed) supersedes the earlier one, finished or not.
    runs = runs.sort_values("start_time").drop_duplicates(["model", "penalty", "lambda", "form", "seed"], keep="last")
    finished = with_group_columns(runs[runs["status"] == "FINISHED"])
    failed = runs[runs["status"] != "FINISHED"]
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []

    arrays: dict[str, dict[str, dict[str, np.ndarray]]] = {"test_scores": {}, "hessian_spectrum": {},
                                                           "distill_curve": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in finished["run_id"]:
            for name, store in arrays.items():
                data = download_npz(client, run_id, f"curves/{name}.npz", Path(tmp) / run_id)
                if data is not None:
                    store[run_id] = data
    if not finished.empty:
        if arrays["test_scores"]:
            figures.append(plots.plot_roc(finished, arrays["test_scores"], out_dir / "roc.png"))
        if arrays["hessian_spectrum"]:
            figures.append(plots.plot_spectra(finished, arrays["hessian_spectrum"], out_dir / "hessian_spectrum.png"))
        if arrays["distill_curve"]:
            figures.append(plots.plot_learning_curves(finished, arrays["distill_curve"],
                                                      out_dir / "distill_fidelity.png"))
        prune = plots.metric_curves(finished, r"(?P<name>prune)_auc_at_(?P<x>[^_]+)")
        for name, points in prune.items():
            figures.append(plots.plot_metric_curves(finished, points, xlabel="sparsity", ylabel="test AUC",
                                                    title="magnitude pruning", path=out_dir / f"{name}.png"))
        quant = plots.metric_curves(finished, r"(?P<name>quant)_auc_(?P<x>\d+)bit")
        for name, points in quant.items():
            figures.append(plots.plot_metric_curves(finished, points, xlabel="weight bits", ylabel="test AUC",
                                                    title="post-training quantisation", path=out_dir / f"{name}.png"))
        robust = plots.metric_curves(finished, r"robust_(?P<name>.+?)_auc_(?P<x>[^_]+)")
        for name, points in robust.items():
            figures.append(plots.plot_metric_curves(finished, points, xlabel=f"{name} strength", ylabel="test AUC",
                                                    title=f"robustness: {name}", path=out_dir / f"robust_{name}.png"))

    claims = claims_table(finished) if not finished.empty else pd.DataFrame()
    lines = [f"# softsym report: `{experiment}`", "",
             f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from {client.tracking_uri}.", ""]
    if not runs.empty and runs["end_time"].notna().any():
        wall = (runs["end_time"].max() - runs["start_time"].min()) / 60_000
        lines += [f"Runs: {len(finished)} finished, {len(failed)} failed; wall time of the runs {wall:.1f} min.", ""]
    lines += ["## Claims", "", VERDICT_RULE, ""]
    if claims.empty:
        lines += ["No penalised group with a baseline to compare against.", ""]
    else:
        lines += [markdown_table(family_verdicts(claims)), ""]
        shown = claims.assign(
            baseline=[fmt(m, s) for m, s in zip(claims["baseline"], claims["baseline_std"], strict=True)],
            penalised=[fmt(m, s) for m, s in zip(claims["penalised"], claims["penalised_std"], strict=True)],
            delta=[fmt(d, s) for d, s in zip(claims["delta"], claims["se"], strict=True)],
            **{"lambda": [f"{v:g}" for v in claims["lambda"]]},
        )[["family", "claim", "model", "penalty", "lambda", "baseline", "penalised", "delta", "verdict"]]
        lines += [markdown_table(shown.rename(columns={"delta": "Δ ± SE"})), ""]
    lines += ["## Results (mean ± std over seeds)", ""]
    lines += [markdown_table(results_table(finished)) if not finished.empty else "No finished runs.", ""]
    lines += ["## Failed runs", ""]
    if failed.empty:
        lines += ["None.", ""]
    else:
        listing = failed[["run_name", "run_id", "status", "error"]].assign(
            error=[str(e).replace("|", "/").replace("\n", " ")[:200] for e in failed["error"]])
        lines += [markdown_table(listing), ""]
    lines += ["## Plots", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]

    summary = out_dir / "summary.md"
    tmp_path = summary.with_suffix(".md.tmp")
    tmp_path.write_text("\n".join(lines))
    os.replace(tmp_path, summary)
    return summary


def log_report(client: MlflowClient, experiment: str, out_dir: Path) -> str:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(experiment_id, run_name="report", tags={"stage": "report"})
    client.log_artifacts(run.info.run_id, str(out_dir), "report")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="softsym-report", description=__doc__)
    parser.add_argument("--experiment", required=True, help="MLflow experiment name (mlflow.experiment_name)")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{PROJECT_ROOT}/mlflow.db")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default reports/<experiment>)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from softsym.tracking import TrackingError, check_reachable

    try:
        check_reachable(args.tracking_uri, 5.0)
        client = MlflowClient(args.tracking_uri)
        out_dir = args.out or PROJECT_ROOT / "reports" / args.experiment
        summary = write_report(client, args.experiment, out_dir)
        if not args.no_log:
            log_report(client, args.experiment, out_dir)
    except (ValueError, TrackingError) as exc:
        print(f"softsym-report: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"softsym-report: wrote {summary}")


if __name__ == "__main__":
    main()
