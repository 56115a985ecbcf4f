"""``softsym-report``: turn an MLflow experiment's runs into ``reports/<experiment>/summary.md``, ``claims.csv``,
``correlations.csv``, ``strengths.csv`` and plots."""

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

from softsym.atomic import write_text_atomic
from softsym.report import plots
from softsym.report.claims import CLAIMS_CSV_COLUMNS, claims_table, latest_per_job, main_grid, with_group_columns
from softsym.report.collect import download_npz, parent_runs
from softsym.report.correlations import CORRELATIONS_CSV_COLUMNS, correlation_table
from softsym.report.learning_curves import plot_learning_curves
from softsym.report.options import ReportOptions, load_options
from softsym.report.prediction_checks import prediction_section
from softsym.report.strengths import STRENGTH_COLUMNS, strength_table, strengths_section
from softsym.report.summary import (
    background_warnings,
    claims_section,
    correlations_section,
    markdown_table,
    results_table,
)

RUN_ARRAYS = ("test_scores", "hessian_spectrum", "distill_curve")


def run_arrays(client: MlflowClient, run_ids) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{artifact name: {run id: arrays}} for the runs' ``curves/<name>.npz`` artifacts that exist."""
    arrays: dict[str, dict[str, dict[str, np.ndarray]]] = {name: {} for name in RUN_ARRAYS}
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            for name, store in arrays.items():
                data = download_npz(client, run_id, f"curves/{name}.npz", Path(tmp) / run_id)
                if data is not None:
                    store[run_id] = data
    return arrays


def draw_figures(finished: pd.DataFrame, arrays, correlations: pd.DataFrame, options: ReportOptions,
                 out_dir: Path) -> list[Path]:
    figures: list[Path] = []
    if arrays["test_scores"]:
        figures.append(plots.plot_roc(finished, arrays["test_scores"], out_dir / "roc.png"))
    if arrays["hessian_spectrum"]:
        figures.append(plots.plot_spectra(finished, arrays["hessian_spectrum"], out_dir / "hessian_spectrum.png"))
    if arrays["distill_curve"]:
        figures.append(plots.plot_learning_curves(finished, arrays["distill_curve"],
                                                  out_dir / "distill_fidelity.png"))
    for name, points in plots.metric_curves(finished, r"(?P<name>prune)_auc_at_(?P<x>[^_]+)").items():
        figures.append(plots.plot_metric_curves(finished, points, xlabel="sparsity [fraction of weights removed]",
                                                ylabel="test AUC", title="magnitude pruning",
                                                path=out_dir / f"{name}.png"))
    for name, points in plots.metric_curves(finished, r"(?P<name>quant)_auc_(?P<x>\d+)bit").items():
        figures.append(plots.plot_metric_curves(finished, points, xlabel="weight precision [bits]", ylabel="test AUC",
                                                title="post-training quantisation", path=out_dir / f"{name}.png"))
    for name, points in plots.metric_curves(finished, r"robust_(?P<name>.+?)_auc_(?P<x>[^_]+)").items():
        figures.append(plots.plot_metric_curves(finished, points,
                                                xlabel=plots.ROBUSTNESS_AXES.get(name, f"{name} strength"),
                                                ylabel="test AUC", title=f"robustness: {name}",
                                                path=out_dir / f"robust_{name}.png"))
    learning_curve = plot_learning_curves(finished, out_dir / "learning_curve.png")
    if learning_curve is not None:
        figures.append(learning_curve)
    for complexity in options.correlation_primary:
        figure = plots.plot_correlations(finished, correlations, complexity, out_dir / f"correlation_{complexity}.png")
        if figure is not None:
            figures.append(figure)
    return figures


def write_report(client: MlflowClient, experiment: str, out_dir: Path, options: ReportOptions | None = None) -> Path:
    options = options or load_options()
    runs = parent_runs(client, experiment)
    if runs.empty:
        raise ValueError(f"MLflow experiment {experiment!r} has no runs yet")
    runs = latest_per_job(runs)
    finished = with_group_columns(runs[runs["status"] == "FINISHED"])
    failed = runs[runs["status"] != "FINISHED"]
    out_dir.mkdir(parents=True, exist_ok=True)

    claims = claims_table(main_grid(finished), options) if not finished.empty else claims_table(pd.DataFrame(
        columns=["model", "penalty", "lambda", "seed"]), options)
    correlations = correlation_table(main_grid(finished), options) if not finished.empty else \
        pd.DataFrame(columns=list(CORRELATIONS_CSV_COLUMNS))
    figures = draw_figures(finished, run_arrays(client, finished["run_id"]), correlations, options, out_dir) \
        if not finished.empty else []
    write_text_atomic(out_dir / "claims.csv", claims[list(CLAIMS_CSV_COLUMNS)].to_csv(index=False))
    write_text_atomic(out_dir / "correlations.csv", correlations.to_csv(index=False))
    strengths = strength_table(main_grid(finished), options) if not finished.empty else \
        pd.DataFrame(columns=list(STRENGTH_COLUMNS))
    write_text_atomic(out_dir / "strengths.csv", strengths.to_csv(index=False))

    lines = [f"# softsym report: `{experiment}`", "",
             f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from {client.tracking_uri}.", ""]
    if not runs.empty and runs["end_time"].notna().any():
        wall = (runs["end_time"].max() - runs["start_time"].min()) / 60_000
        lines += [f"Runs: {len(finished)} finished, {len(failed)} failed; wall time of the runs {wall:.1f} min.", ""]
    lines += ["Machine-readable: [claims.csv](claims.csv) (every comparison, one row each), "
              "[correlations.csv](correlations.csv) and [strengths.csv](strengths.csv).", ""]
    lines += claims_section(claims, options)
    lines += strengths_section(strengths, options)
    warnings = background_warnings(finished, options) if not finished.empty else []
    if warnings:
        lines += ["## Warnings", "", *warnings, ""]
    lines += correlations_section(correlations)
    lines += ["## Results (mean ± std over seeds; `*_se`: mean per-run standard error)", "",
              "`seeds` is n per group; `_se` columns are the per-run test-set errors (DeLong for AUC, binomial "
              "for 1/ε_B) averaged over the group's runs.", ""]
    lines += [markdown_table(results_table(main_grid(finished), options)) if not finished.empty else
              "No finished runs.", ""]
    lines += ["## Failed runs", ""]
    if failed.empty:
        lines += ["None.", ""]
    else:
        listing = failed[["run_name", "run_id", "status", "error"]].assign(
            error=[str(e).replace("|", "/").replace("\n", " ")[:200] for e in failed["error"]])
        lines += [markdown_table(listing), ""]
    prediction_lines, prediction_figures = prediction_section(client, finished, out_dir, markdown_table) \
        if not finished.empty else ([], [])
    lines += prediction_lines
    figures += prediction_figures
    lines += ["## Plots", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]

    return write_text_atomic(out_dir / "summary.md", "\n".join(lines))


def report_experiment(experiment: str) -> str:
    """The MLflow experiment of a study's report runs: apart, so that the study's runs table lists jobs only."""
    return f"{experiment}-report"


def log_report(client: MlflowClient, experiment: str, out_dir: Path) -> str:
    """A ``report`` run holding the report folder (summary.md, claims.csv, correlations.csv, plots), in the
    experiment ``<experiment>-report``."""
    from softsym.tracking import prepare_store

    experiment_id = prepare_store(client.tracking_uri, report_experiment(experiment))
    run = client.create_run(experiment_id, run_name=f"report-{experiment}",
                            tags={"stage": "report", "report_of": experiment})
    client.log_artifacts(run.info.run_id, str(out_dir), "report")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="softsym-report", description=__doc__)
    parser.add_argument("--experiment", required=True, help="MLflow experiment name (mlflow.experiment_name)")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd()}/mlflow.db",
                        help="MLflow store (default: mlflow.db in the working directory, as softsym's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default reports/<experiment> in the working directory)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    parser.add_argument("--config", type=Path, default=None,
                        help="report options (default configs/report/default.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="report.KEY=VALUE",
                        help="override report options, e.g. report.alpha=0.01")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from softsym.tracking import TrackingError, check_reachable

    try:
        options = load_options(args.config, args.overrides)
        check_reachable(args.tracking_uri, 5.0)
        client = MlflowClient(args.tracking_uri)
        out_dir = args.out or Path.cwd() / "reports" / args.experiment
        summary = write_report(client, args.experiment, out_dir, options)
        if not args.no_log:
            log_report(client, args.experiment, out_dir)
    except (ValueError, TrackingError) as exc:
        print(f"softsym-report: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"softsym-report: wrote {summary}")


if __name__ == "__main__":
    main()
