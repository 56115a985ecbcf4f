"""The report's section on the per-jet predictions: background rejection in jet-pT bins and the QCD soft-drop
mass sculpting at ε_S = 0.5 (``softsym.report.sculpting``), penalised groups against their baseline (paired by
seed), with ``rejection_vs_pt.png`` and ``mass_sculpting.png``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from softsym.plotting import new_figure, save_figure, styled
from softsym.report.claims import GROUP_KEYS
from softsym.report.sculpting import MASS_EDGES, mass_sculpting, pt_bin_rejection, pt_edges
from softsym.report.statistics import paired_difference
from softsym.training.predictions import read_predictions


def download_predictions(client: MlflowClient, parent_ids, dest: Path) -> dict[str, dict[str, np.ndarray]]:
    """{parent run id: columns} of the train-stage runs' ``predictions/test.*`` artifacts that exist."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for parent_id in parent_ids:
        experiment_id = client.get_run(parent_id).info.experiment_id
        stages = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}' "
                                    "and tags.stage = 'train'", max_results=1)
        if not stages:
            continue
        run_id = stages[0].info.run_id
        names = [a.path for a in client.list_artifacts(run_id, "predictions") if Path(a.path).stem == "test"]
        if names:
            path = client.download_artifacts(run_id, names[0], str(dest / parent_id))
            out[parent_id] = read_predictions(path)
    return out


def per_run_table(runs: pd.DataFrame, predictions: dict[str, dict[str, np.ndarray]]) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per run with predictions: group keys, seed, ``sculpt_jsd`` (± ``_se``) and ``rej50_pt<b>``
    (± ``_se``) in the pooled background-pT quantile bins (the edges are returned)."""
    pts = np.concatenate([p["jet_pt"][p["label"] == 0] for p in predictions.values()])
    edges = pt_edges(pts)
    rows = []
    for _, run in runs[runs["run_id"].isin(list(predictions))].iterrows():
        columns = predictions[run["run_id"]]
        sculpt = mass_sculpting(columns, seed=0)
        row = {**{k: run[k] for k in GROUP_KEYS}, "seed": run["seed"], "run_id": run["run_id"],
               "sculpt_jsd": sculpt.jsd, "sculpt_jsd_se": sculpt.jsd_se}
        for b, (rej, se, _) in enumerate(pt_bin_rejection(columns, edges)):
            row[f"rej50_pt{b}"], row[f"rej50_pt{b}_se"] = rej, se
        rows.append(row)
    return pd.DataFrame(rows), edges


def comparison_table(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean ± std over seeds per group and, for penalised groups, Δ = penalised − baseline paired by seed with
    its 95% interval."""
    rows = []
    for key, group in table.groupby(list(GROUP_KEYS)):
        base = table[(table["model"] == key[0]) & (table["penalty"] == "none")]
        row = {**dict(zip(GROUP_KEYS, key, strict=True)), "seeds": len(group)}
        row["lambda"] = f"{key[2]:g}"
        for m in metrics:
            values = group[m].replace([np.inf, -np.inf], np.nan).dropna()
            row[m] = f"{values.mean():.3g} ± {values.std(ddof=1):.2g}" if len(values) > 1 else \
                (f"{values.mean():.3g}" if len(values) else "–")
            if key[1] != "none" and not base.empty:
                pairs = group.merge(base, on="seed", suffixes=("", "_base"))[[m, f"{m}_base"]]
                pairs = pairs.replace([np.inf, -np.inf], np.nan).dropna()
                d = paired_difference(pairs[m].to_numpy(), pairs[f"{m}_base"].to_numpy())
                row[f"Δ {m}"] = "–" if not np.isfinite(d.ci_low) else \
                    f"{d.delta:+.3g} [{d.ci_low:+.3g}, {d.ci_high:+.3g}]"
            else:
                row[f"Δ {m}"] = "–"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_rejection_vs_pt(table: pd.DataFrame, edges: np.ndarray, path: Path) -> Path:
    centres = 0.5 * (edges[1:] + edges[:-1])
    columns = [f"rej50_pt{b}" for b in range(len(centres))]
    with styled():
        fig, ax = new_figure()
        for key, group in table.groupby(list(GROUP_KEYS)):
            values = group[columns].replace([np.inf, -np.inf], np.nan)
            label = f"{key[0]} · none" if key[1] == "none" else f"{key[0]} · {key[1]} λ={key[2]:g}"
            ax.errorbar(centres, values.mean().to_numpy(), yerr=values.std(ddof=1).fillna(0).to_numpy(),
                        xerr=0.5 * np.diff(edges), marker="o", ls="", capsize=3, label=label)
        ax.set_xlabel("jet $p_T$ [GeV] (background quantile bins)")
        ax.set_ylabel(r"$1/\varepsilon_B$ at $\varepsilon_S = 0.5$ (cut per bin)")
        ax.legend(fontsize=11)
        return save_figure(fig, path)


def plot_mass_sculpting(predictions: dict, runs: pd.DataFrame, path: Path) -> Path:
    """The background soft-drop mass before and after the cut, seeds pooled, one panel per model."""
    runs = runs[runs["run_id"].isin(list(predictions))]
    models = sorted(runs["model"].unique())
    centres = 0.5 * (MASS_EDGES[1:] + MASS_EDGES[:-1])
    with styled():
        fig, axes = new_figure(1, len(models), figsize=(8 * len(models), 6))
        axes = np.atleast_1d(axes)
        for ax, model in zip(axes, models, strict=True):
            drawn_before = False
            for key, group in runs[runs["model"] == model].groupby(list(GROUP_KEYS)):
                parts = [mass_sculpting(predictions[r], n_boot=0) for r in group["run_id"]]
                before, after = sum(p.before for p in parts), sum(p.after for p in parts)
                if not drawn_before:
                    ax.step(centres, before / max(before.sum(), 1), where="mid", color="k", label="QCD, no cut")
                    drawn_before = True
                label = "none" if key[1] == "none" else f"{key[1]} λ={key[2]:g}"
                ax.step(centres, after / max(after.sum(), 1), where="mid", label=f"after cut: {label}")
            ax.set_title(model)
            ax.set_xlabel("soft-drop mass [GeV]")
            ax.set_ylabel("fraction of QCD jets")
            ax.legend(fontsize=11)
        return save_figure(fig, path)


def prediction_section(client: MlflowClient, finished: pd.DataFrame, out_dir: Path,
                       markdown_table) -> tuple[list[str], list[Path]]:
    """The summary's lines and the figures of the predictions checks (nothing without predictions)."""
    with tempfile.TemporaryDirectory() as tmp:
        predictions = download_predictions(client, finished["run_id"], Path(tmp))
    if not predictions:
        return [], []
    table, edges = per_run_table(finished, predictions)
    table.to_csv(out_dir / "sculpting.csv", index=False)
    rej = [f"rej50_pt{b}" for b in range(len(edges) - 1)]
    lines = ["## pT dependence and mass sculpting (per-jet predictions)", "",
             "1/ε_B at ε_S = 0.5 with the cut set inside each jet-pT bin (bins: quantiles of the background pT, "
             f"edges {', '.join(f'{e:.0f}' for e in edges)} GeV), and `sculpt_jsd`: the Jensen–Shannon divergence "
             "(base 2) between the QCD soft-drop mass distribution before and after the global cut at ε_S = 0.5 "
             "(0: no sculpting). Mean ± std over seeds; Δ = penalised − baseline paired by seed, 95% t interval. "
             "Per run, with errors: [sculpting.csv](sculpting.csv).", "",
             markdown_table(comparison_table(table, ["sculpt_jsd", *rej])), ""]
    figures = [plot_rejection_vs_pt(table, edges, out_dir / "rejection_vs_pt.png"),
               plot_mass_sculpting(predictions, finished, out_dir / "mass_sculpting.png")]
    return lines, figures
