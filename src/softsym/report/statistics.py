"""The report's statistics: paired and unpaired differences with confidence intervals, an exact sign-flip
permutation test, Holm–Bonferroni, verdicts, and Spearman's ρ with a bootstrap interval (numpy/scipy only).

Paired difference of n pairs (penalised x_i, baseline y_i of the same seed), on the tested scale:

    d_i = x_i − y_i                (linear)     d_i = ln x_i − ln y_i   (log: positive ratio-like metrics)
    Δ = mean d,  s = std d (ddof 1),  t = Δ / (s/√n),  p = 2·P(T_{n−1} > |t|),  CI = Δ ± t_{n−1, 0.975}·s/√n

On log scale Δ is the mean log ratio (exp Δ: the geometric-mean factor). The sign-flip test enumerates every
assignment of signs to the d_i (2ⁿ of them; a seeded Monte Carlo of 20 000 beyond n = 16) and gives the
fraction with |mean| ≥ |Δ| (two-sided; its smallest value is 2/2ⁿ, so it cannot reject at n ≤ 5 for α = 0.05:
it is a check on the t-test's normality, not the decision).

Unpaired (Welch), only where the comparison says so: Δ = mean x − mean y, SE² = s_x²/n_x + s_y²/n_y,
Welch–Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats

SIGN_FLIP_EXACT_MAX = 16
SIGN_FLIP_DRAWS = 20_000
ROUNDING = 1e-12


@dataclass(frozen=True)
class Difference:
    """Penalised minus baseline on the tested scale, with its CI and two-sided p-values."""
    test: str              # paired | welch
    scale: str             # linear | log
    n_pairs: int           # pairs (paired) or 0 (welch)
    n_penalised: int
    n_baseline: int
    delta: float
    ci_low: float
    ci_high: float
    p_value: float         # t-test (NaN when there is nothing to test)
    p_sign_flip: float     # exact sign-flip permutation test (paired only; NaN otherwise)


def _on_scale(values: np.ndarray, log_scale: bool) -> np.ndarray:
    return np.log(values) if log_scale else values


def _untestable(test: str, scale: str, n_pairs: int, n_pen: int, n_base: int, delta: float) -> Difference:
    nan = float("nan")
    return Difference(test, scale, n_pairs, n_pen, n_base, delta, nan, nan, nan, nan)


def sign_flip_p_value(differences: np.ndarray, *, seed: int = 0) -> float:
    """Two-sided p of the sign-flip permutation test of mean(d) = 0 (exact up to 16 pairs)."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return float("nan")
    observed = abs(d.mean())
    if len(d) <= SIGN_FLIP_EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(SIGN_FLIP_DRAWS, len(d)))
    means = np.abs(signs @ d) / len(d)
    hits = int(np.sum(means >= observed * (1 - 1e-12)))
    if len(d) <= SIGN_FLIP_EXACT_MAX:
        return hits / len(signs)
    return (hits + 1) / (len(signs) + 1)  # Monte Carlo: the observed assignment counts, so p is never 0


def paired_difference(penalised, baseline, *, log_scale: bool = False, confidence: float = 0.95) -> Difference:
    """Mean paired difference ``penalised − baseline`` with its t interval, t-test and sign-flip test.

    ``penalised[i]`` and ``baseline[i]`` are one pair (the same seed); pairs with a non-finite value (e.g.
    1/ε_B = inf when no background jet passes the cut) are left out. Differences below 1e-12 of the values
    count as zero; a zero spread of the differences (ties: values on a grid, such as chosen bit widths) has
    no t statistic, so p is then the exact sign-flip p (1 when every difference is zero)."""
    x, y = np.asarray(penalised, dtype=float), np.asarray(baseline, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} and {y.shape}")
    scale = "log" if log_scale else "linear"
    if log_scale and (np.any(x <= 0) or np.any(y <= 0)):
        raise ValueError("log scale needs positive values")
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    xs, ys = _on_scale(x, log_scale), _on_scale(y, log_scale)
    d = xs - ys
    if len(d):  # a difference at rounding level is no difference (e.g. a − c − (b − c) for a = b)
        d[np.abs(d) <= ROUNDING * max(np.abs(xs).max(), np.abs(ys).max())] = 0.0
    n = len(d)
    if n < 2:
        return _untestable("paired", scale, n, n, n, float(d.mean()) if n else float("nan"))
    delta, sd = float(d.mean()), float(d.std(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n)
    p_sign_flip = sign_flip_p_value(d)
    tied = sd <= ROUNDING * float(np.abs(d).max())  # equal differences up to rounding
    p = p_sign_flip if tied else float(2 * stats.t.sf(abs(delta) / (sd / np.sqrt(n)), n - 1))
    return Difference("paired", scale, n, n, n, delta, delta - half, delta + half, p, p_sign_flip)


def welch_difference(penalised, baseline, *, log_scale: bool = False, confidence: float = 0.95) -> Difference:
    """Difference of the means of two independent samples with Welch's t interval and test."""
    x = _on_scale(np.asarray(penalised, dtype=float), log_scale)
    y = _on_scale(np.asarray(baseline, dtype=float), log_scale)
    scale = "log" if log_scale else "linear"
    delta = float(x.mean() - y.mean()) if len(x) and len(y) else float("nan")
    if len(x) < 2 or len(y) < 2:
        return _untestable("welch", scale, 0, len(x), len(y), delta)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = float(np.sqrt(vx + vy))
    if se == 0:
        p, half = (1.0 if delta == 0 else 0.0), 0.0
    else:
        df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
        p = float(2 * stats.t.sf(abs(delta) / se, df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    return Difference("welch", scale, 0, len(x), len(y), delta, delta - half, delta + half, p, float("nan"))


def holm_adjust(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN and do not
    count towards the family size."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def verdict(delta: float, p_adjusted: float, direction: int, *, alpha: float) -> str:
    """``supported`` (adjusted p < α, Δ in the claimed direction), ``contradicted`` (adjusted p < α, Δ the
    other way) or ``inconclusive``."""
    if not np.isfinite(p_adjusted) or not np.isfinite(delta) or p_adjusted >= alpha or delta == 0:
        return "inconclusive"
    return "supported" if direction * delta > 0 else "contradicted"


@dataclass(frozen=True)
class Correlation:
    """Spearman's ρ over n runs with a percentile bootstrap interval (resampling runs)."""
    n_runs: int
    rho: float
    ci_low: float
    ci_high: float


def spearman_rho(x, y) -> float:
    """Spearman's ρ (Pearson correlation of midranks); NaN if either variable is constant."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_with_ci(x, y, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> Correlation:
    """ρ of the finite pairs and the bootstrap percentile interval over runs (resamples with a constant
    variable are skipped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    nan = float("nan")
    if n < 3:
        return Correlation(n, spearman_rho(x, y) if n >= 2 else nan, nan, nan)
    rho = spearman_rho(x, y)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(n_boot, n))
    rx = np.apply_along_axis(stats.rankdata, 1, x[index])
    ry = np.apply_along_axis(stats.rankdata, 1, y[index])
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    norm = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    ok = norm > 0
    boots = (rx * ry).sum(1)[ok] / norm[ok]
    if len(boots) == 0:
        return Correlation(n, rho, nan, nan)
    lo, hi = np.quantile(boots, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Correlation(n, rho, float(lo), float(hi))
