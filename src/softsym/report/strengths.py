"""How strong each arm of a study is (pandas, no MLflow): per group (model, penalty, λ), its AUC cost and its
geometric complexity against the model's baseline, and for the controls their GC against the model's
*reference* symmetry arm: the symmetry group with the largest λ whose AUC cost is below
``report.matched_auc_tolerance`` at 95% confidence (the upper end of its interval; validation AUC, or test AUC
for runs without one). Every quantity is paired by seed (the same split, initialisation and jets) and shown
with its 95% t interval over the pairs:

    AUC cost  = 1 − exp(mean_i ln(AUC_group,i / AUC_baseline,i))      (validation and test AUC)
    GC ratio  = exp(mean_i ln(GC_group,i / GC_other,i))              (other: the baseline, or the reference)
    comparable GC: the control's GC ratio to the reference arm lies within [1/f, f],
                   f = report.comparable_gc_factor

The study's strengths (``study:`` in ``configs/experiment/paper.yaml``) are chosen from this table on the
validation AUC of tuning seeds that the study does not use (``make strengths``), so the test split and the
study's seeds play no part in the choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from softsym.report.claims import GROUP_KEYS, per_seed
from softsym.report.options import ReportOptions
from softsym.report.statistics import Difference, paired_difference
from softsym.report.summary import markdown_table

CONTROLS = ("gc", "weight_decay")
# Each measured quantity comes with its 95% interval as <name>_low, <name>_high.
QUANTITIES = ("val_auc_cost", "test_auc_cost", "gc_ratio", "gc_calibrated_ratio", "gc_ratio_to_reference")
STRENGTH_COLUMNS = ("model", "penalty", "lambda", "role", "n_pairs",
                    *(f"{q}{part}" for q in QUANTITIES for part in ("", "_low", "_high")), "comparable_gc")


def _log_ratio(group: pd.DataFrame, other: pd.DataFrame, metric: str) -> Difference | None:
    """Paired log ratio of a positive metric over the seeds both groups have (None when it is missing)."""
    if metric not in group or metric not in other:
        return None
    a, b = per_seed(group, [metric])[metric], per_seed(other, [metric])[metric]
    common = a.index.intersection(b.index)
    a, b = a[common], b[common]
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if not keep.any():
        return None
    return paired_difference(a[keep].to_numpy(), b[keep].to_numpy(), log_scale=True)


def _cost(diff: Difference | None) -> tuple[float, tuple[float, float]]:
    """The relative AUC cost 1 − e^Δ and its interval (a cost falls as the ratio rises)."""
    if diff is None:
        return float("nan"), (float("nan"), float("nan"))
    return 1 - np.exp(diff.delta), (1 - np.exp(diff.ci_high), 1 - np.exp(diff.ci_low))


def _ratio(diff: Difference | None) -> tuple[float, tuple[float, float]]:
    if diff is None:
        return float("nan"), (float("nan"), float("nan"))
    return float(np.exp(diff.delta)), (float(np.exp(diff.ci_low)), float(np.exp(diff.ci_high)))


def _cost_row(group: pd.DataFrame, base: pd.DataFrame) -> dict[str, float]:
    row = {}
    for metric in ("val_auc", "test_auc"):
        value, (low, high) = _cost(_log_ratio(group, base, metric))
        row.update({f"{metric}_cost": value, f"{metric}_cost_low": low, f"{metric}_cost_high": high})
    return row


def matched_at_95(cost: dict[str, float], tolerance: float) -> bool:
    """The AUC cost's upper 95% bound (validation; test where no validation AUC was logged) is below the
    tolerance."""
    high = cost["val_auc_cost_high"]
    return bool((high if np.isfinite(high) else cost["test_auc_cost_high"]) < tolerance)


def strength_table(runs: pd.DataFrame, options: ReportOptions | None = None) -> pd.DataFrame:
    """One row per non-baseline group: its AUC cost and GC ratio against the baseline and, for the controls,
    its GC ratio to the reference symmetry arm of its model (columns ``STRENGTH_COLUMNS``)."""
    options = options or ReportOptions()
    if runs.empty:
        return pd.DataFrame(columns=list(STRENGTH_COLUMNS))
    factor = options.comparable_gc_factor
    groups = {key: group for key, group in runs.groupby(list(GROUP_KEYS)) if key[1] != "none"}
    baselines = {model: runs[(runs["model"] == model) & (runs["penalty"] == "none")]
                 for model in runs["model"].unique()}
    costs = {key: _cost_row(group, baselines[key[0]]) for key, group in groups.items()}
    references: dict[str, tuple] = {}  # model -> the key of its reference symmetry group
    for key, cost in costs.items():
        if key[1] not in CONTROLS and matched_at_95(cost, options.matched_auc_tolerance) \
                and key[2] > references.get(key[0], (None, None, -np.inf))[2]:
            references[key[0]] = key
    rows = []
    for key, group in groups.items():
        model, penalty, lam = key
        base, reference = baselines[model], groups.get(references.get(model))
        gc = _log_ratio(group, base, "geometric_complexity")
        measured = {
            "gc_ratio": _ratio(gc),
            "gc_calibrated_ratio": _ratio(_log_ratio(group, base, "geometric_complexity_calibrated")),
            "gc_ratio_to_reference": _ratio(_log_ratio(group, reference, "geometric_complexity")
                                            if penalty in CONTROLS and reference is not None else None),
        }
        role = "control" if penalty in CONTROLS else ("reference" if references.get(model) == key else "symmetry")
        to_reference = measured["gc_ratio_to_reference"][0]
        row = {"model": model, "penalty": penalty, "lambda": lam, "role": role,
               "n_pairs": gc.n_pairs if gc is not None else 0, **costs[key],
               "comparable_gc": bool(1 / factor <= to_reference <= factor) if np.isfinite(to_reference) else None}
        for name, (value, (low, high)) in measured.items():
            row.update({name: value, f"{name}_low": low, f"{name}_high": high})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(STRENGTH_COLUMNS))


def _percent(value: float, ci: tuple[float, float]) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:+.2%} [{ci[0]:+.2%}, {ci[1]:+.2%}]"


def _factor(value: float, ci: tuple[float, float]) -> str:
    if not np.isfinite(value):
        return "–"
    return f"×{value:.3g} [×{ci[0]:.3g}, ×{ci[1]:.3g}]" if np.isfinite(ci[0]) else f"×{value:.3g}"


def strengths_section(table: pd.DataFrame, options: ReportOptions) -> list[str]:
    """The ``## Strengths of the arms`` section of ``summary.md``."""
    f = options.comparable_gc_factor
    lines = ["## Strengths of the arms", "",
             "Per group against its model's baseline, paired by seed, with 95% t intervals over the pairs: the "
             "relative AUC cost 1 − AUC/AUC_baseline (validation and test), the geometric complexity as a factor "
             "of the baseline's (raw and of the temperature-calibrated logits), and for the controls their GC as "
             "a factor of the *reference* arm's (the symmetry group with the largest λ whose AUC cost is below "
             f"{options.matched_auc_tolerance:.0%} at 95% confidence, validation AUC): "
             f"*comparable* when that factor lies within [×{1 / f:.2g}, ×{f:.2g}] "
             "(`report.comparable_gc_factor`).", ""]
    if table.empty:
        return lines + ["No group besides the baselines.", ""]
    def column(name, form):
        return [form(v, (lo, hi)) for v, lo, hi in
                zip(table[name], table[f"{name}_low"], table[f"{name}_high"], strict=True)]

    shown = pd.DataFrame({
        "model": table["model"], "arm": table["penalty"], "strength": [f"{v:g}" for v in table["lambda"]],
        "role": table["role"], "pairs": table["n_pairs"],
        "val AUC cost": column("val_auc_cost", _percent), "test AUC cost": column("test_auc_cost", _percent),
        "GC ×baseline": column("gc_ratio", _factor), "GC(f/T) ×baseline": column("gc_calibrated_ratio", _factor),
        "GC ×reference": column("gc_ratio_to_reference", _factor),
        "comparable GC": ["–" if c is None else ("yes" if c else "no") for c in table["comparable_gc"]],
    })
    return lines + [markdown_table(shown), ""]
