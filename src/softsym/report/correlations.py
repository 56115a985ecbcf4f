"""The correlation claim: across the finished runs of a study (every λ, seed and control), within each model,
Spearman's ρ between each complexity measure and each outcome, with a bootstrap 95% interval over runs."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pandas as pd

from softsym.report.options import ReportOptions
from softsym.report.statistics import spearman_with_ci

CORRELATIONS_CSV_COLUMNS = ("model", "complexity", "outcome", "n_runs", "rho", "ci_low", "ci_high")
MIN_RUNS = 3


def matching(columns, patterns) -> list[str]:
    """Columns matching any of the fnmatch patterns, in the patterns' order, each once."""
    out: list[str] = []
    for pattern in patterns:
        out += sorted(c for c in columns if fnmatchcase(c, pattern) and c not in out)
    return out


def correlation_table(runs: pd.DataFrame, options: ReportOptions | None = None) -> pd.DataFrame:
    """One row per (model, complexity measure, outcome) with at least three runs having both."""
    options = options or ReportOptions()
    complexity = matching(runs.columns, options.correlation_complexity)
    outcomes = matching(runs.columns, options.correlation_outcomes)
    rows = []
    for model, model_runs in runs.groupby("model"):
        for c in complexity:
            for o in outcomes:
                pair = model_runs[[c, o]].apply(pd.to_numeric, errors="coerce").dropna()
                if len(pair) < MIN_RUNS:
                    continue
                r = spearman_with_ci(pair[c].to_numpy(), pair[o].to_numpy(), n_boot=options.bootstrap)
                rows.append({"model": model, "complexity": c, "outcome": o, "n_runs": r.n_runs, "rho": r.rho,
                             "ci_low": r.ci_low, "ci_high": r.ci_high})
    return pd.DataFrame(rows, columns=list(CORRELATIONS_CSV_COLUMNS))
