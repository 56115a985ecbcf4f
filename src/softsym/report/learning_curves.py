"""The learning curve: AUC on the test split and on every evaluation set against the number of training jets
(``data_n_train``: runs with ``data.max_train_jets`` and the full-size runs together), one line per (model,
penalty, λ) with a band of ± the standard error of the mean over seeds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from softsym.plotting import new_figure, save_figure, styled

GROUP_KEYS = ["model", "penalty", "lambda"]
_EVAL_AUC = re.compile(r"eval_(?P<name>.+)_auc")


def auc_columns(runs: pd.DataFrame) -> list[str]:
    """``test_auc`` and each ``eval_<set>_auc`` the runs have."""
    return ["test_auc", *sorted(c for c in runs.columns if _EVAL_AUC.fullmatch(c))]


def learning_curve_points(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per group and training size: the mean of ``column`` over seeds, its standard error and the seeds."""
    rows = []
    for key, group in runs.dropna(subset=["data_n_train", column]).groupby([*GROUP_KEYS, "data_n_train"]):
        values = group[column].to_numpy(dtype=float)
        se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        rows.append({**dict(zip([*GROUP_KEYS, "data_n_train"], key, strict=True)), "mean": float(values.mean()),
                     "se": se, "n": len(values)})
    return pd.DataFrame(rows)


def plot_learning_curves(runs: pd.DataFrame, path: Path) -> Path | None:
    """One panel per AUC column; None when the runs have fewer than two training sizes."""
    if "data_n_train" not in runs or runs["data_n_train"].nunique() < 2:
        return None
    columns = [c for c in auc_columns(runs) if c in runs]
    with styled():
        fig, axes = new_figure(1, len(columns), figsize=(6 * len(columns), 5))
        axes = np.atleast_1d(axes)
        for ax, column in zip(axes, columns, strict=True):
            points = learning_curve_points(runs, column)
            for key, group in points.groupby(GROUP_KEYS):
                group = group.sort_values("data_n_train")
                x, y, se = group["data_n_train"], group["mean"], group["se"].fillna(0.0)
                line, = ax.plot(x, y, marker="o", label=f"{key[0]} · {key[1]} λ={key[2]}")
                ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.25)
            ax.set_xscale("log")
            ax.set_xlabel("training jets")
            ax.set_ylabel("AUC")
            ax.set_title("test" if column == "test_auc" else _EVAL_AUC.fullmatch(column).group("name"))
        axes[0].legend(fontsize=9)
        return save_figure(fig, path)
