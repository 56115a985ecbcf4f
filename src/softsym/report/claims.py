"""Aggregation over seeds and the verdict rule of the study's claims (pure pandas, no MLflow).

A *group* is (model, penalty, λ); the baseline of a model is its unpenalised group (penalty ``none`` or
λ = 0, which is the same run by construction). For a claim "metric m moves in direction d under the
penalty" and a penalised group P against baseline B:

    Δ = mean_P(m) − mean_B(m),   SE = sqrt(s_P²/n_P + s_B²/n_B)   (sample std over seeds)
    supported      if d·Δ >  2·SE and both groups have ≥ 2 seeds
    not supported  if d·Δ < −2·SE and both groups have ≥ 2 seeds
    inconclusive   otherwise (the difference is within two standard errors, or too few seeds)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GROUP_KEYS = ("model", "penalty", "lambda")
MIN_SEEDS = 2
SIGNIFICANCE = 2.0


@dataclass(frozen=True)
class Claim:
    family: str        # generalisation / simplicity / robustness / distillation
    metric: str
    direction: int     # +1: the paper's claim is that the penalty raises the metric; −1: lowers it
    statement: str


STATIC_CLAIMS = (
    Claim("generalisation", "test_auc", +1, "higher test AUC"),
    Claim("generalisation", "test_rej30", +1, "higher background rejection at ε_S = 0.3"),
    Claim("generalisation", "gap_auc", -1, "smaller train−test AUC gap"),
    Claim("simplicity", "hessian_trace", -1, "smaller Hessian trace (flatter minimum)"),
    Claim("simplicity", "hessian_top_eig", -1, "smaller top Hessian eigenvalue"),
    Claim("simplicity", "hessian_near_zero_frac", +1, "more near-zero Hessian eigenvalues"),
    Claim("simplicity", "hessian_eff_dim", -1, "fewer effective parameters (Σ λ/(λ+z))"),
    Claim("simplicity", "hessian_goldstone_excess", +1, "symmetry directions deeper in the near-zero eigenspace"),
    Claim("simplicity", "geometric_complexity", -1, "lower geometric complexity"),
    Claim("simplicity", "compressed_bits", -1, "fewer bits to keep AUC within 1%"),
    Claim("distillation", "student_agreement", +1, "higher student–teacher agreement"),
    Claim("distillation", "student_steps_to_95", -1, "fewer steps to 95% of final fidelity"),
    Claim("invariance", "symmetry_violation", -1, "smaller measured symmetry violation"),
)


def claims_for(columns) -> list[Claim]:
    """The static claims plus one robustness claim per perturbation found (``robust_<p>_loss``)."""
    robust = sorted(c for c in columns if c.startswith("robust_") and c.endswith("_loss"))
    extra = [Claim("robustness", c, -1, f"smaller mean AUC loss under {c[7:-5]}") for c in robust]
    return [c for c in STATIC_CLAIMS if c.metric in columns] + extra


def with_group_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """Normalise λ to float, call every λ = 0 run the baseline (``penalty = none``), and add the robustness
    loss ``robust_<p>_loss = test_auc − robust_<p>_aurc``: how much AUC the perturbation costs on average over
    its strength grid, so a claim about robustness is not a claim about clean accuracy in disguise."""
    runs = runs.copy()
    if "test_auc" in runs:
        for column in [c for c in runs.columns if c.startswith("robust_") and c.endswith("_aurc")]:
            runs[column[:-5] + "_loss"] = runs["test_auc"] - runs[column]
    runs["lambda"] = pd.to_numeric(runs["lambda"], errors="coerce").fillna(0.0)
    runs.loc[runs["lambda"] == 0.0, "penalty"] = "none"
    runs.loc[runs["penalty"] == "none", "lambda"] = 0.0
    return runs


def aggregate(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and number of seeds of each metric per group."""
    grouped = runs.groupby(list(GROUP_KEYS))[metrics]
    out = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}, axis=1)
    return out.sort_index()


def verdict(delta: float, se: float, n_a: int, n_b: int, direction: int) -> str:
    if n_a < MIN_SEEDS or n_b < MIN_SEEDS or not np.isfinite(delta):
        return "inconclusive"
    if direction * delta > SIGNIFICANCE * se:
        return "supported"
    if direction * delta < -SIGNIFICANCE * se:
        return "not supported"
    return "inconclusive"


def claims_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, model, penalised group) against that model's baseline."""
    claims = claims_for(runs.columns)
    rows = []
    for model, model_runs in runs.groupby("model"):
        base = model_runs[model_runs["penalty"] == "none"]
        for (penalty, lam), group in model_runs[model_runs["penalty"] != "none"].groupby(["penalty", "lambda"]):
            for claim in claims:
                a, b = group[claim.metric].dropna(), base[claim.metric].dropna()
                if a.empty or b.empty:
                    continue
                delta = a.mean() - b.mean()
                se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))) if min(len(a), len(b)) > 1 \
                    else float("nan")
                rows.append({
                    "family": claim.family, "claim": claim.statement, "metric": claim.metric, "model": model,
                    "penalty": penalty, "lambda": lam, "baseline": b.mean(), "baseline_std": b.std(ddof=1),
                    "penalised": a.mean(), "penalised_std": a.std(ddof=1), "delta": delta, "se": se,
                    "n_baseline": len(b), "n_penalised": len(a),
                    "verdict": verdict(delta, se, len(a), len(b), claim.direction),
                })
    return pd.DataFrame(rows)


def family_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Per claim family: how many comparisons support, contradict, or leave it open."""
    if table.empty:
        return pd.DataFrame(columns=["family", "supported", "not supported", "inconclusive"])
    counts = table.groupby(["family", "verdict"]).size().unstack(fill_value=0)
    for col in ("supported", "not supported", "inconclusive"):
        if col not in counts:
            counts[col] = 0
    return counts[["supported", "not supported", "inconclusive"]].reset_index()


def fmt(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(std):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {std:.2g}"
