"""The report's figures (mplhep style): ROC, Hessian spectra, compression, robustness and distillation curves.

Every function takes the per-run table (and per-run arrays where needed), draws one line per
(model, penalty, λ) group with the mean over seeds and a band of ± one standard deviation, and returns the
saved path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

plt.style.use(mplhep.style.ROOT)


def group_label(key: tuple) -> str:
    model, penalty, lam = key
    return f"{model} · none" if penalty == "none" else f"{model} · {penalty} λ={lam:g}"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


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
    fig, ax = plt.subplots(figsize=(8, 6))
    xs = np.array([x for x, _ in points])
    for key, group in runs.groupby(["model", "penalty", "lambda"]):
        values = group[[c for _, c in points]].to_numpy(dtype=float)
        mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
        ax.plot(xs, mean, marker="o", label=group_label(key))
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    if logx:
        ax.set_xscale("symlog", linthresh=min((abs(x) for x in xs if x), default=1e-3))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=10)
    return _save(fig, path)


def groups_with_arrays(runs: pd.DataFrame, arrays: Mapping[str, dict[str, np.ndarray]]):
    """(label, [arrays of each seed's run]) for every group that has any."""
    for key, group in runs.groupby(["model", "penalty", "lambda"]):
        found = [arrays[r] for r in group["run_id"] if r in arrays]
        if found:
            yield group_label(key), found


def plot_roc(runs: pd.DataFrame, scores: Mapping[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Background rejection 1/ε_B against ε_S, seeds pooled per group (signal = any class but QCD)."""
    fig, ax = plt.subplots(figsize=(8, 6))
    for label, arrays in groups_with_arrays(runs, scores):
        labels = np.concatenate([a["labels"] for a in arrays]) != 0
        signal = np.concatenate([1 - a["probs"][:, 0] for a in arrays])
        fpr, tpr, _ = roc_curve(labels, signal)
        keep = fpr > 0
        ax.plot(tpr[keep], 1 / fpr[keep], label=label)
    ax.set_yscale("log")
    ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
    ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
    ax.legend(fontsize=10)
    return _save(fig, path)


def plot_spectra(runs: pd.DataFrame, spectra: Mapping[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Hessian eigenvalue density (symmetric-log x axis), seeds pooled per group."""
    fig, ax = plt.subplots(figsize=(8, 6))
    for label, arrays in groups_with_arrays(runs, spectra):
        density = np.mean([a["density"] for a in arrays], axis=0)
        ax.plot(arrays[0]["grid"], density, label=label)
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("log")
    ax.set_xlabel("Hessian eigenvalue λ")
    ax.set_ylabel("spectral density (SLQ)")
    ax.legend(fontsize=10)
    return _save(fig, path)


def plot_learning_curves(runs: pd.DataFrame, curves: Mapping[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Student fidelity (agreement with the teacher) against training steps, mean over seeds per group."""
    fig, ax = plt.subplots(figsize=(8, 6))
    for label, arrays in groups_with_arrays(runs, curves):
        n = min(len(a["steps"]) for a in arrays)
        values = np.array([a["agreement"][:n] for a in arrays])
        steps = arrays[0]["steps"][:n]
        ax.plot(steps, values.mean(0), label=label)
        ax.fill_between(steps, values.mean(0) - values.std(0), values.mean(0) + values.std(0), alpha=0.2)
    ax.set_xlabel("student training step")
    ax.set_ylabel("agreement with teacher")
    ax.legend(fontsize=10)
    return _save(fig, path)
