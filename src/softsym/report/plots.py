"""The report's figures: ROC, Hessian spectra, compression, robustness, distillation and correlation plots.

Each draws one line per (model, penalty, λ) group with the mean over seeds and a band over seeds, inside
``softsym.plotting.styled()``, and returns the saved path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator
from sklearn.metrics import roc_curve

from softsym.plotting import new_figure, save_figure, styled

GROUP_KEYS = ["model", "penalty", "lambda"]
LEGEND_SIZE = 11
DENSITY_FLOOR = 1e-6   # spectral densities below this fraction of the panel's peak are drawn at the floor
EPS_S_GRID = np.linspace(0.02, 0.98, 97)

# x-axis label (with units) of each robustness perturbation's strength.
ROBUSTNESS_AXES = {
    "rotation": "rotation angle about the jet axis [rad]",
    "boost": "boost rapidity along the jet axis",
    "transverse_boost": "transverse boost rapidity",
    "energy_scale": "jet energy scale shift [fraction]",
    "energy_smearing": "relative energy resolution σ [fraction]",
    "angular_smearing": "angular resolution σ(η), σ(φ) [rapidity, rad]",
    "soft_contamination": "soft particles added per jet (⟨p_T⟩ in GeV set in config) [count]",
    "collinear_split": "hardest particles split collinearly [count]",
    "constituent_loss": "constituent loss probability [fraction]",
    "feature_noise": "Gaussian feature noise σ [standardised feature units]",
    "fgsm": "FGSM step ε [standardised feature units, L∞]",
    "pgd": "PGD radius ε [standardised feature units, L∞]",
}


def group_label(key: tuple) -> str:
    model, penalty, lam = key
    return f"{model} · none" if penalty == "none" else f"{model} · {penalty} λ={lam:g}"


def dataset_label(runs: pd.DataFrame) -> str:
    """E.g. ``pythia · 550 < p_T < 650 GeV`` from the runs' ``data`` tag and ``data.pt_min/pt_max`` params."""
    parts = []
    if "data" in runs and runs["data"].notna().any():
        parts.append(", ".join(sorted({str(v) for v in runs["data"].dropna() if str(v)})))
    if {"data.pt_min", "data.pt_max"} <= set(runs.columns):
        windows = {(str(a), str(b)) for a, b in zip(runs["data.pt_min"], runs["data.pt_max"], strict=True)
                   if pd.notna(a) and pd.notna(b)}
        parts += [f"{float(a):g} < $p_T$ < {float(b):g} GeV" for a, b in sorted(windows)]
    return " · ".join(p for p in parts if p)


def parse_strength(text: str) -> float:
    """Metric-name strengths such as ``0.1``, ``m0.05`` (negative) or ``1p5`` back to numbers."""
    return float(text.replace("m", "-").replace("p", "."))


def metric_curves(runs: pd.DataFrame, pattern: str) -> dict[str, list[tuple[float, str]]]:
    """Metric columns matching ``pattern`` (groups: name, x) → {name: [(x, column), ...]} sorted by x."""
    curves: dict[str, list[tuple[float, str]]] = {}
    regex = re.compile(pattern)
    for column in runs.columns:
        m = regex.fullmatch(column)
        if m:
            try:
                curves.setdefault(m.group("name"), []).append((parse_strength(m.group("x")), column))
            except ValueError:
                continue
    return {k: sorted(v) for k, v in curves.items()}


def plot_metric_curves(runs: pd.DataFrame, points: list[tuple[float, str]], *, xlabel: str, ylabel: str,
                       title: str, path: Path, logx: bool = False) -> Path:
    xs = np.array([x for x, _ in points])
    with styled():
        fig, ax = new_figure()
        for key, group in runs.groupby(GROUP_KEYS):
            values = group[[c for _, c in points]].to_numpy(dtype=float)
            mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
            line, = ax.plot(xs, mean, marker="o", label=f"{group_label(key)} (n={len(group)})")
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        if logx:
            ax.set_xscale("symlog", linthresh=min((abs(x) for x in xs if x), default=1e-3))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=14)
        ax.legend(fontsize=LEGEND_SIZE, title="mean ± std over seeds", title_fontsize=LEGEND_SIZE)
        return save_figure(fig, path)


def groups_with_arrays(runs: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]]):
    """(group key, [arrays of each seed's run]) for every group that has any."""
    for key, group in runs.groupby(GROUP_KEYS):
        found = [arrays[r] for r in group["run_id"] if r in arrays]
        if found:
            yield key, found


def rejection_curve(scores: dict[str, np.ndarray]) -> np.ndarray:
    """1/ε_B at ``EPS_S_GRID`` for one run (signal = any class but QCD); inf where no background passes."""
    fpr, tpr, _ = roc_curve(scores["labels"] != 0, 1 - scores["probs"][:, 0])
    eps_b = np.interp(EPS_S_GRID, tpr, fpr)
    with np.errstate(divide="ignore"):
        return np.where(eps_b > 0, 1 / eps_b, np.inf)


def plot_roc(runs: pd.DataFrame, scores: Mapping[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Background rejection 1/ε_B (log) against ε_S: geometric mean over seeds, band ± one std of ln(1/ε_B)."""
    with styled():
        fig, ax = new_figure()
        drawn = False
        for key, arrays in groups_with_arrays(runs, scores):
            log_rej = np.log(np.array([rejection_curve(a) for a in arrays]))
            finite = np.isfinite(log_rej).all(0)
            if not finite.any():  # no background jet passes at any ε_S of the grid in some seed
                continue
            log_rej = log_rej[:, finite]
            mean, std = log_rej.mean(0), log_rej.std(0)
            line, = ax.plot(EPS_S_GRID[finite], np.exp(mean), label=f"{group_label(key)} (n={len(arrays)})")
            if len(arrays) > 1:
                ax.fill_between(EPS_S_GRID[finite], np.exp(mean - std), np.exp(mean + std),
                                color=line.get_color(), alpha=0.2)
            drawn = True
        if drawn:
            ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
        ax.legend(fontsize=LEGEND_SIZE, title=dataset_label(runs) or None, title_fontsize=LEGEND_SIZE)
        return save_figure(fig, path)


def symlog_ticks(lo: float, hi: float, linthresh: float, max_per_side: int = 3,
                 min_gap: float = 0.12) -> list[float]:
    """0 and a few ±10^k outside the linear region (at most ``max_per_side`` decades each side), dropping any
    tick closer than ``min_gap`` of the axis length to one already kept (no overlapping labels)."""
    candidates = []
    for sign, edge in ((1, hi), (-1, -lo)):
        if edge <= linthresh:
            continue
        k_lo, k_hi = int(np.ceil(np.log10(linthresh))), int(np.floor(np.log10(edge)))
        step = max(1, int(np.ceil((k_hi - k_lo + 1) / max_per_side)))
        candidates += [sign * 10.0**k for k in range(k_hi, k_lo - 1, -step)]

    def position(x):
        return np.sign(x) * np.log10(1 + abs(x) / linthresh)

    span = position(hi) - position(lo)
    kept = [0.0]
    for tick in sorted(candidates, key=abs, reverse=True):
        if all(abs(position(tick) - position(k)) >= min_gap * span for k in kept):
            kept.append(tick)
    return sorted(kept)


def _tick_text(value: float, _pos=None) -> str:
    if value == 0:
        return "0"
    k = int(round(np.log10(abs(value))))
    return f"${'-' if value < 0 else ''}10^{{{k}}}$"


def plot_spectra(runs: pd.DataFrame, spectra: Mapping[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Hessian eigenvalue density (SLQ), one panel per model: the mean over seeds on a common grid, a min–max
    band over seeds, densities below ``DENSITY_FLOOR`` × the panel's peak drawn at that floor."""
    models = sorted({key[0] for key, _ in groups_with_arrays(runs, spectra)})
    with styled():
        fig, axes = new_figure(1, len(models), figsize=(8 * len(models), 6))
        fig.set_layout_engine("constrained")
        axes = np.atleast_1d(axes)
        for ax, model in zip(axes, models, strict=True):
            groups = list(groups_with_arrays(runs[runs["model"] == model], spectra))
            lo = min(float(a["grid"].min()) for _, arrays in groups for a in arrays)
            hi = max(float(a["grid"].max()) for _, arrays in groups for a in arrays)
            linthresh = max(abs(lo), abs(hi)) * 1e-4 or 1e-6
            u = np.linspace(np.arcsinh(lo / linthresh), np.arcsinh(hi / linthresh), 1500)
            grid = linthresh * np.sinh(u)
            curves = [(key, np.array([np.interp(grid, a["grid"], a["density"], left=0.0, right=0.0)
                                      for a in arrays])) for key, arrays in groups]
            floor = DENSITY_FLOOR * max(float(c.mean(0).max()) for _, c in curves)
            for key, dens in curves:
                clipped = np.maximum(dens, floor)
                line, = ax.plot(grid, np.maximum(dens.mean(0), floor), label=f"{group_label(key)} (n={len(dens)})")
                if len(dens) > 1:
                    ax.fill_between(grid, clipped.min(0), clipped.max(0), color=line.get_color(), alpha=0.2)
            ax.set_xscale("symlog", linthresh=linthresh)
            ax.xaxis.set_major_locator(FixedLocator(symlog_ticks(lo, hi, linthresh)))
            ax.xaxis.set_major_formatter(FuncFormatter(_tick_text))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_yscale("log")
            ax.set_ylim(floor, 3 * floor / DENSITY_FLOOR)
            ax.set_xlabel("Hessian eigenvalue λ")
            ax.set_ylabel("spectral density (SLQ)")
            ax.set_title(f"{model} (symlog: linear within ±{linthresh:.1g})", fontsize=14)
            ax.legend(fontsize=LEGEND_SIZE)
        return save_figure(fig, path)


def plot_learning_curves(runs: pd.DataFrame, curves: Mapping[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Student fidelity (agreement with the teacher) against training steps, mean ± std over seeds per group."""
    with styled():
        fig, ax = new_figure()
        for key, arrays in groups_with_arrays(runs, curves):
            n = min(len(a["steps"]) for a in arrays)
            values = np.array([a["agreement"][:n] for a in arrays])
            steps = arrays[0]["steps"][:n]
            line, = ax.plot(steps, values.mean(0), label=f"{group_label(key)} (n={len(arrays)})")
            ax.fill_between(steps, values.mean(0) - values.std(0), values.mean(0) + values.std(0),
                            color=line.get_color(), alpha=0.2)
        ax.set_xlabel("student training step")
        ax.set_ylabel("agreement with teacher [fraction]")
        ax.legend(fontsize=LEGEND_SIZE)
        return save_figure(fig, path)


def plot_correlations(runs: pd.DataFrame, correlations: pd.DataFrame, complexity: str, path: Path) -> Path | None:
    """One panel per outcome: every run of every model, the complexity measure against the outcome, with
    Spearman's ρ and its bootstrap interval per model in the legend."""
    rows = correlations[correlations["complexity"] == complexity]
    outcomes = list(dict.fromkeys(rows["outcome"]))
    if not outcomes:
        return None
    ncols = min(3, len(outcomes))
    nrows = -(-len(outcomes) // ncols)
    with styled():
        fig, axes = new_figure(nrows, ncols, figsize=(7.5 * ncols, 6 * nrows))
        fig.set_layout_engine("constrained")
        axes = np.atleast_1d(axes).ravel()
        for ax in axes[len(outcomes):]:
            ax.set_visible(False)
        for ax, outcome in zip(axes, outcomes, strict=False):
            for row in rows[rows["outcome"] == outcome].itertuples(index=False):
                pts = runs[runs["model"] == row.model][[complexity, outcome]].dropna()
                rho = "ρ undefined (constant)" if not np.isfinite(row.rho) else \
                    f"ρ = {row.rho:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"
                ax.scatter(pts[complexity], pts[outcome], s=25, alpha=0.8, label=f"{row.model}: {rho}")
            values = runs[complexity].dropna()
            if len(values) and (values > 0).all() and values.max() > 3 * values.min():
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(complexity.replace("_", " "))
            ax.set_ylabel(outcome.replace("_", " "))
            ax.legend(fontsize=LEGEND_SIZE - 1, title="Spearman ρ, 95% bootstrap CI", title_fontsize=LEGEND_SIZE - 1)
        return save_figure(fig, path)
