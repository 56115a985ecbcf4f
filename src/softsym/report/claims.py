"""The study's claims, paired by seed against the baseline, with Holm–Bonferroni verdicts (pandas, no MLflow).

A *group* is (model, penalty, λ); the baseline of a model is its unpenalised group (penalty ``none`` or
λ = 0, which is the same run by construction). A penalised run and the baseline run of the same model and seed
share the split, the initialisation and the generated jets, so they form a pair; each comparison is the mean
paired difference (penalised − baseline) with a 95% t interval and a paired t-test, on log scale for positive
ratio-like metrics (see ``softsym.report.statistics``). Groups without a seed in common with their baseline are
compared only when ``report.unpaired = welch`` (and say so).

Every comparison of a report forms one Holm–Bonferroni family (primary and secondary endpoints, every model,
penalty and λ); verdicts at ``report.alpha``: supported / contradicted / inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from softsym.report.options import ReportOptions
from softsym.report.statistics import Difference, holm_adjust, paired_difference, verdict, welch_difference

GROUP_KEYS = ("model", "penalty", "lambda")
CLAIMS_CSV_COLUMNS = ("family", "endpoint", "metric", "model", "penalty", "lambda", "scale", "n_pairs", "delta",
                      "ci_low", "ci_high", "p_value", "p_adjusted", "verdict")
VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Claim:
    family: str        # invariance / simplicity / generalisation / robustness / distillation
    metric: str
    direction: int     # +1: the paper's claim is that the penalty raises the metric; −1: lowers it
    statement: str
    log_scale: bool = False  # positive ratio-like metric: compared as a log ratio


STATIC_CLAIMS = (
    Claim("generalisation", "test_auc", +1, "higher test AUC"),
    Claim("generalisation", "test_rej30", +1, "higher background rejection at ε_S = 0.3", log_scale=True),
    Claim("generalisation", "gap_auc", -1, "smaller train−test AUC gap"),
    Claim("simplicity", "hessian_trace", -1, "smaller Hessian trace (flatter minimum)", log_scale=True),
    Claim("simplicity", "hessian_top_eig", -1, "smaller top Hessian eigenvalue", log_scale=True),
    Claim("simplicity", "hessian_near_zero_frac", +1, "more near-zero Hessian eigenvalues"),
    Claim("simplicity", "hessian_eff_dim", -1, "fewer effective parameters (Σ λ/(λ+z))", log_scale=True),
    Claim("simplicity", "hessian_goldstone_excess", +1, "symmetry directions deeper in the near-zero eigenspace"),
    Claim("simplicity", "hessian_goldstone_curvature_ratio", -1, "flatter loss along the symmetry directions",
          log_scale=True),
    Claim("simplicity", "geometric_complexity", -1, "lower geometric complexity", log_scale=True),
    Claim("simplicity", "compressed_bits", -1, "fewer bits to keep AUC within 1%", log_scale=True),
    Claim("distillation", "student_agreement", +1, "higher student–teacher agreement"),
    Claim("distillation", "student_steps_to_95", -1, "fewer steps to 95% of final fidelity", log_scale=True),
    Claim("invariance", "symmetry_violation", -1, "smaller measured symmetry violation", log_scale=True),
)


def claims_for(columns) -> list[Claim]:
    """The static claims found, one per evaluation set (``eval_<name>_auc`` / ``_gap``) and one robustness claim
    per perturbation (``robust_<p>_loss``)."""
    columns = list(columns)
    extra = []
    for c in sorted(columns):
        if c.startswith("eval_") and c.endswith("_auc"):
            extra.append(Claim("generalisation", c, +1, f"higher AUC on evaluation set {c[5:-4]}"))
        elif c.startswith("eval_") and c.endswith("_gap"):
            extra.append(Claim("generalisation", c, -1, f"smaller AUC gap to evaluation set {c[5:-4]}"))
        elif c.startswith("robust_") and c.endswith("_loss") and not c.startswith("robust_eval_"):
            subject = c[7:].removesuffix("_loss").removesuffix("_auc")
            what = {"outside": "the perturbations outside the penalised group",
                    "inside": "the perturbations inside the penalised group"}.get(subject, subject)
            extra.append(Claim("robustness", c, -1, f"smaller mean AUC loss under {what}"))
    return [c for c in STATIC_CLAIMS if c.metric in columns] + extra


def latest_per_job(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per job: the latest FINISHED run of it if there is one (a killed re-run does not take a good
    result away), else its latest run (listed as failed). A job is the same ``config_hash`` tag (the resolved
    config without volatile keys), else, for runs logged without it, the same (model, penalty, λ, form,
    control, seed)."""
    finished = (runs["status"] == "FINISHED") if "status" in runs else pd.Series(True, index=runs.index)
    runs = runs.assign(_finished=finished).sort_values(["_finished", "start_time"])
    key = runs.get("config_hash", pd.Series("", index=runs.index)).fillna("")
    legacy = runs[["model", "penalty", "lambda", "form", "seed"]].astype(str).agg("|".join, axis=1)
    if "control" in runs:
        legacy = legacy + "|" + runs["control"].astype(str)
    return runs[~key.where(key != "", legacy).duplicated(keep="last")].drop(columns="_finished")


def main_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's runs at its full training size: learning-curve points (``data.max_train_jets`` set) are
    drawn in their own plot and never paired with, or averaged into, the main grid's runs."""
    if "data.max_train_jets" not in runs:
        return runs
    size = runs["data.max_train_jets"].astype(str).str.strip().str.lower()
    return runs[size.isin(("none", "null", "nan", ""))]


def with_group_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """Normalise λ to float, call every λ = 0 run without a control the baseline (``penalty = none``), name
    the control arms by their ``control`` tag (the weight-decay control has no penalty but is no baseline:
    ``penalty = weight_decay``, λ = its ``train.weight_decay``), and, for runs that did not log the robustness
    stage's own ``robust_<p>_auc_loss``, add ``robust_<p>_loss = test_auc − robust_<p>_aurc``: how much AUC the
    perturbation costs on average over its strength grid, so a claim about robustness is not a claim about
    clean accuracy in disguise."""
    runs = runs.copy()
    if "test_auc" in runs:
        for column in [c for c in runs.columns if c.startswith("robust_") and c.endswith("_aurc")]:
            if column[:-5] + "_auc_loss" not in runs:
                runs[column[:-5] + "_loss"] = runs["test_auc"] - runs[column]
    runs["lambda"] = pd.to_numeric(runs["lambda"], errors="coerce").fillna(0.0)
    control = runs["control"].fillna("none") if "control" in runs else pd.Series("none", index=runs.index)
    plain = control.isin(("none", ""))
    runs.loc[plain & (runs["lambda"] == 0.0), "penalty"] = "none"
    runs.loc[plain & (runs["penalty"] == "none"), "lambda"] = 0.0
    decay = control == "weight_decay"
    if decay.any():
        runs.loc[decay, "penalty"] = "weight_decay"
        if "train.weight_decay" in runs:
            runs.loc[decay, "lambda"] = pd.to_numeric(runs.loc[decay, "train.weight_decay"], errors="coerce")
    return runs


def aggregate(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and number of seeds of each metric per group."""
    grouped = runs.groupby(list(GROUP_KEYS))[metrics]
    out = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}, axis=1)
    return out.sort_index()


def accuracy_matched(runs: pd.DataFrame, *, tolerance: float) -> dict[tuple, bool]:
    """(model, penalty, λ) → whether the group's mean test AUC is at least (1 − tolerance) × its baseline's
    (groups of a model without a baseline or without test AUC count as matched: nothing to flag)."""
    out: dict[tuple, bool] = {}
    for key, group in runs.groupby(list(GROUP_KEYS)):
        base = runs[(runs["model"] == key[0]) & (runs["penalty"] == "none")]
        if "test_auc" not in runs or base["test_auc"].dropna().empty or group["test_auc"].dropna().empty:
            out[key] = True
            continue
        out[key] = bool(group["test_auc"].mean() >= (1 - tolerance) * base["test_auc"].mean())
    return out


def per_seed(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The metrics per seed (a seed run twice under names that mean the same group, e.g. λ = 0 of two
    penalties, counts once with its mean)."""
    return frame[["seed", *metrics]].apply(lambda c: c if c.name == "seed" else pd.to_numeric(c, errors="coerce")) \
        .groupby("seed")[metrics].mean()


# Metrics each run logs for its own symmetry and, as <metric>_<symmetry>, for every symmetry.
PER_SYMMETRY = ("symmetry_violation", "robust_outside_auc_loss", "robust_inside_auc_loss")


def _paired_metric(metric: str, penalty: str, columns) -> str:
    """The metric of the symmetry the penalised group imposes, measured alike on its baseline: each run's
    ``symmetry_violation`` (and outside-group robustness loss) is that of its own symmetry (a baseline measures
    ``lorentz``), so a rotation arm is compared on ``symmetry_violation_rotation`` (``robust_outside_auc_loss_
    rotation``: the same perturbations) for both."""
    specific = f"{metric}_{penalty}"
    return specific if metric in PER_SYMMETRY and specific in columns else metric


def compare(penalised: pd.Series, baseline: pd.Series, claim: Claim, *, unpaired: str) -> Difference:
    """Paired comparison over the seeds in common; Welch only when ``unpaired = welch`` and no seed is
    shared; otherwise a comparison that tests nothing."""
    log = claim.log_scale and bool((penalised > 0).all() and (baseline > 0).all())
    common = penalised.index.intersection(baseline.index)
    if len(common) > 0:
        return paired_difference(penalised[common].to_numpy(), baseline[common].to_numpy(), log_scale=log)
    if unpaired == "welch":
        return welch_difference(penalised.to_numpy(), baseline.to_numpy(), log_scale=log)
    nan = float("nan")
    return Difference("none", "log" if log else "linear", 0, len(penalised), len(baseline), nan, nan, nan, nan,
                      nan)


def claims_table(runs: pd.DataFrame, options: ReportOptions | None = None,
                 claims: list[Claim] | None = None) -> pd.DataFrame:
    """One row per (claim, model, penalised group) against that model's baseline, with Holm-adjusted
    p-values over all rows and verdicts at ``options.alpha``; the columns of ``claims.csv`` first."""
    options = options or ReportOptions()
    claims = claims_for(runs.columns) if claims is None else claims
    matched = accuracy_matched(runs, tolerance=options.matched_auc_tolerance)
    rows = []
    metrics = list(dict.fromkeys([*(c.metric for c in claims),
                                  *(c for c in runs.columns if c.startswith(tuple(f"{m}_" for m in PER_SYMMETRY))
                                    and not c.endswith(("_se", "_n")))]))
    for model, model_runs in runs.groupby("model"):
        base_seeds = per_seed(model_runs[model_runs["penalty"] == "none"], metrics)
        for (penalty, lam), group in model_runs[model_runs["penalty"] != "none"].groupby(["penalty", "lambda"]):
            group_seeds = per_seed(group, metrics)
            for claim in claims:
                metric = _paired_metric(claim.metric, penalty, group_seeds.columns)
                a = group_seeds[metric].replace([np.inf, -np.inf], np.nan).dropna()
                b = base_seeds[metric].replace([np.inf, -np.inf], np.nan).dropna()
                if a.empty or b.empty:
                    continue
                diff = compare(a, b, claim, unpaired=options.unpaired)
                primary = options.is_primary(claim.family, claim.metric, runs.columns, penalty)
                rows.append({
                    "family": claim.family, "endpoint": "primary" if primary else "secondary",
                    "metric": claim.metric, "model": model, "penalty": penalty, "lambda": lam,
                    "scale": diff.scale, "n_pairs": diff.n_pairs, "delta": diff.delta, "ci_low": diff.ci_low,
                    "ci_high": diff.ci_high, "p_value": diff.p_value,
                    "claim": claim.statement, "direction": claim.direction, "test": diff.test,
                    "p_sign_flip": diff.p_sign_flip, "n_penalised": diff.n_penalised,
                    "n_baseline": diff.n_baseline, "baseline": b.mean(), "baseline_std": b.std(ddof=1),
                    "penalised": a.mean(), "penalised_std": a.std(ddof=1),
                    "matched": matched[(model, penalty, lam)],
                })
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=[*CLAIMS_CSV_COLUMNS, "claim", "direction", "test", "p_sign_flip", "matched"])
    table["p_adjusted"] = holm_adjust(table["p_value"].to_numpy())
    table["verdict"] = [verdict(d, p, s, alpha=options.alpha)
                        for d, p, s in zip(table["delta"], table["p_adjusted"], table["direction"], strict=True)]
    rest = [c for c in table.columns if c not in CLAIMS_CSV_COLUMNS]
    return table[[*CLAIMS_CSV_COLUMNS, *rest]]


def family_verdicts(table: pd.DataFrame, *, matched_only: bool = False,
                    families: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per claim family and endpoint kind: how many comparisons support, contradict, or leave it open
    (optionally only accuracy-matched groups, or only some families)."""
    if not table.empty and matched_only:
        table = table[table["matched"].astype(bool)]
    if not table.empty and families is not None:
        table = table[table["family"].isin(families)]
    if table.empty:
        return pd.DataFrame(columns=["family", "endpoint", *VERDICTS])
    counts = table.groupby(["family", "endpoint"]).verdict.value_counts().unstack(fill_value=0)
    for col in VERDICTS:
        if col not in counts:
            counts[col] = 0
    return counts[list(VERDICTS)].reset_index()


def fmt(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(std):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {std:.2g}"
