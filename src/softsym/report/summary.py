"""The sections of ``summary.md``: the verdict rule, claims, warnings, correlations and results (markdown)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from softsym.report.claims import GROUP_KEYS, accuracy_matched, aggregate, family_verdicts, fmt
from softsym.report.options import ReportOptions

HEADLINE = ("test_auc", "test_auc_se", "test_rej30", "test_rej30_se", "test_rej50", "test_rej50_se", "gap_auc",
            "symmetry_violation", "hessian_top_eig", "hessian_trace", "hessian_near_zero_frac", "hessian_eff_dim",
            "hessian_goldstone_overlap", "hessian_goldstone_excess", "hessian_goldstone_curvature_ratio",
            "geometric_complexity", "compressed_bits", "student_auc", "student_agreement", "student_kl",
            "student_steps_to_95")
MATCHED_FAMILIES = ("simplicity", "robustness")


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def verdict_rule(options: ReportOptions) -> list[str]:
    tolerance = f"{options.matched_auc_tolerance:.0%}"
    unpaired = ("a group without a seed in common with its baseline is compared by Welch's unpaired t-test "
                "(marked `welch`)" if options.unpaired == "welch"
                else "a group without a seed in common with its baseline is not tested")
    return [
        "Verdict rule: for each model, every penalised group (penalty, λ > 0) is compared with the unpenalised "
        "group (λ = 0) of the same model, **paired by seed** (a pair shares the split, the initialisation and "
        "the generated jets): Δ = mean over pairs of (penalised − baseline), with a 95% t interval and a "
        "two-sided paired t-test; positive ratio-like metrics (violation, GC, Hessian trace and eigenvalues, "
        "curvature ratio, bits, steps, rejections) are compared on **log scale** (Δ = mean log ratio, shown as "
        "the factor e^Δ). An exact sign-flip permutation p is shown beside it as a check (it cannot go below "
        f"2/2ⁿ). {unpaired.capitalize()}.",
        "",
        f"Multiplicity: **Holm–Bonferroni** over all {{n_tests}} comparisons of this report together (primary "
        f"and secondary endpoints, every model, penalty and λ: one family), family-wise α = {options.alpha:g}. "
        "**supported**: adjusted p < α with Δ in the claimed direction; **contradicted**: adjusted p < α the "
        "other way; **inconclusive** otherwise (or fewer than 2 pairs).",
        "",
        f"Matched accuracy: a group whose mean test AUC is more than {tolerance} below its baseline's is "
        f"flagged (`matched` = no); simplicity and robustness verdicts are also counted for matched groups alone.",
        "",
        "Primary endpoints (one per claim family; every other claim is secondary):",
        *options.primary_statement(),
    ]


def _delta_text(row) -> str:
    if not np.isfinite(row.delta):
        return "–"
    if row.scale == "log":
        ci = f" [×{np.exp(row.ci_low):.3g}, ×{np.exp(row.ci_high):.3g}]" if np.isfinite(row.ci_low) else ""
        return f"×{np.exp(row.delta):.3g}{ci}"
    ci = f" [{row.ci_low:.3g}, {row.ci_high:.3g}]" if np.isfinite(row.ci_low) else ""
    return f"{row.delta:+.3g}{ci}"


def _p_text(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.2g}"


def claims_section(claims: pd.DataFrame, options: ReportOptions) -> list[str]:
    rule = [line.replace("{n_tests}", str(int(claims["p_value"].notna().sum())) if not claims.empty else "0")
            for line in verdict_rule(options)]
    lines = ["## Claims", "", *rule, ""]
    if claims.empty:
        return lines + ["No penalised group with a baseline to compare against.", ""]
    lines += ["### Verdicts per family", "", markdown_table(family_verdicts(claims)), "",
              f"Accuracy-matched groups only (mean test AUC within {options.matched_auc_tolerance:.0%} of the "
              "baseline), simplicity and robustness:", "",
              markdown_table(family_verdicts(claims, matched_only=True, families=MATCHED_FAMILIES)), ""]
    shown = pd.DataFrame({
        "family": claims["family"], "claim": claims["claim"], "model": claims["model"],
        "penalty": claims["penalty"], "λ": [f"{v:g}" for v in claims["lambda"]],
        "matched": ["yes" if m else "no" for m in claims["matched"]],
        "n": [f"{p}" if t == "paired" else f"{a}+{b} {t}" for p, a, b, t in
              zip(claims["n_pairs"], claims["n_penalised"], claims["n_baseline"], claims["test"], strict=True)],
        "baseline": [fmt(m, s) for m, s in zip(claims["baseline"], claims["baseline_std"], strict=True)],
        "penalised": [fmt(m, s) for m, s in zip(claims["penalised"], claims["penalised_std"], strict=True)],
        "Δ [95% CI]": [_delta_text(r) for r in claims.itertuples(index=False)],
        "p": [_p_text(p) for p in claims["p_value"]],
        "p sign-flip": [_p_text(p) for p in claims["p_sign_flip"]],
        "p Holm": [_p_text(p) for p in claims["p_adjusted"]],
        "verdict": claims["verdict"],
    })
    for endpoint in ("primary", "secondary"):
        part = shown[claims["endpoint"].to_numpy() == endpoint]
        lines += [f"### {endpoint.capitalize()} endpoints", ""]
        lines += [markdown_table(part) if not part.empty else "None found in these runs.", ""]
    return lines


def background_warnings(runs: pd.DataFrame, options: ReportOptions) -> list[str]:
    """One line per rejection metric that rests, in some groups, on fewer background jets passing the cut
    than the limit: how many groups and runs, the range of the count, and the groups (up to a few)."""
    lines = []
    for column in sorted(c for c in runs.columns if c.endswith("_n_bkg")):
        counts = pd.to_numeric(runs[column], errors="coerce")
        low = runs[counts < options.min_background_jets]
        if low.empty:
            continue
        metric = column[: -len("_n_bkg")]
        groups = [f"{key[0]}/{key[1]} λ={key[2]:g}" for key in low.groupby(list(GROUP_KEYS)).groups]
        shown = ", ".join(groups[:4]) + (f" and {len(groups) - 4} more" if len(groups) > 4 else "")
        low_n, high_n = int(counts[low.index].min()), int(counts[low.index].max())
        count = f"{low_n}" if low_n == high_n else f"{low_n}–{high_n}"
        lines.append(f"- `{metric}` rests on {count} background jets passing the cut (< "
                     f"{options.min_background_jets}) in {len(low)} of {len(runs)} runs ({len(groups)} groups: "
                     f"{shown}); its binomial error is `{metric}_se`.")
    return lines


def correlations_section(correlations: pd.DataFrame) -> list[str]:
    lines = ["## Complexity against outcomes across runs", "",
             "Within each model, over every finished run (every λ, seed and control): Spearman's ρ between a "
             "complexity measure and an outcome, with a 95% percentile bootstrap interval over runs.", ""]
    if correlations.empty:
        return lines + ["Not enough runs with both a complexity measure and an outcome (≥ 3 per model).", ""]
    shown = correlations.assign(**{c: [f"{v:.2f}" if np.isfinite(v) else "– (constant)" if c == "rho" else "–"
                                       for v in correlations[c]] for c in ("rho", "ci_low", "ci_high")})
    return lines + [markdown_table(shown), ""]


def results_table(runs: pd.DataFrame, options: ReportOptions) -> pd.DataFrame:
    """Mean ± std over seeds per group; per-run standard errors (``*_se``) as their mean over the group's runs;
    ``matched`` flags groups more than the tolerance below their baseline's test AUC."""
    evals = sorted(c for c in runs.columns if c.startswith("eval_") and c.endswith(("_auc", "_auc_se", "_gap")))
    metrics = [m for m in HEADLINE if m in runs.columns] + evals
    agg = aggregate(runs, metrics)
    matched = accuracy_matched(runs, tolerance=options.matched_auc_tolerance)
    rows = []
    for key in agg.index:
        row = dict(zip(GROUP_KEYS, key, strict=True))
        row["lambda"] = f"{row['lambda']:g}"
        row["seeds"] = int(agg.loc[key, ("n", metrics[0])]) if metrics else 0
        row["matched"] = "–" if key[1] == "none" else ("yes" if matched.get(key, True) else "no")
        for m in metrics:
            mean = agg.loc[key, ("mean", m)]
            row[m] = (f"{mean:.2g}" if np.isfinite(mean) else "–") if m.endswith("_se") else \
                fmt(mean, agg.loc[key, ("std", m)])
        rows.append(row)
    return pd.DataFrame(rows)
