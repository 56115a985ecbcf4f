"""The report's statistics on planted data: paired tests, log scale, Holm–Bonferroni, DeLong, binomial errors,
Spearman intervals, matched accuracy and primary endpoints (DataFrames, no MLflow)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from softsym.report.claims import Claim, claims_table, family_verdicts, with_group_columns
from softsym.report.correlations import correlation_table
from softsym.report.options import ReportOptions, load_options
from softsym.report.statistics import (
    holm_adjust,
    paired_difference,
    sign_flip_p_value,
    spearman_with_ci,
    welch_difference,
)
from softsym.training.metrics import binary_metrics, delong_auc, rejection_with_error

OPTIONS = load_options()


def _runs(model, penalty, lam, seeds, **metrics):
    return pd.DataFrame({"model": model, "penalty": penalty, "lambda": lam, "seed": list(seeds), **metrics})


def test_small_consistent_paired_effect_under_a_large_seed_component_is_found():
    rng = np.random.default_rng(0)
    seeds = range(6)
    shared = rng.normal(0, 0.03, 6)               # seed-to-seed spread, common to both runs of a seed
    base = 0.90 + shared + rng.normal(0, 0.001, 6)
    pen = 0.90 + shared + 0.005 + rng.normal(0, 0.001, 6)
    runs = with_group_columns(pd.concat([_runs("pfn", "none", 0.0, seeds, test_auc=base),
                                         _runs("pfn", "gc", 0.1, seeds, test_auc=pen)]))
    row = claims_table(runs, OPTIONS).iloc[0]
    assert row.n_pairs == 6 and row.test == "paired" and row.verdict == "supported"
    assert row.ci_low > 0 and row.delta == pytest.approx(0.005, abs=0.002)
    assert welch_difference(pen, base).p_value > 0.5  # an unpaired test misses it


def test_groups_without_common_seeds_are_tested_unpaired_only_when_stated():
    runs = with_group_columns(pd.concat([_runs("pfn", "none", 0.0, [0, 1, 2], test_auc=[0.90, 0.91, 0.90]),
                                         _runs("pfn", "gc", 0.1, [7, 8, 9], test_auc=[0.95, 0.96, 0.955])]))
    default = claims_table(runs, OPTIONS).iloc[0]
    assert default.test == "none" and np.isnan(default.p_value) and default.verdict == "inconclusive"
    welch = claims_table(runs, ReportOptions(unpaired="welch")).iloc[0]
    assert welch.test == "welch" and welch.n_pairs == 0 and welch.verdict == "supported"


def test_large_multiplicative_effect_with_few_seeds_is_found_on_log_scale():
    base = np.array([30.0, 115.0, 200.0])  # 115 ± 88 falling 200×: inconclusive on a linear scale
    pen = base / 200 * np.exp([0.2, -0.3, 0.1])
    runs = with_group_columns(pd.concat([_runs("pfn", "none", 0.0, range(3), symmetry_violation=base),
                                         _runs("pfn", "lorentz", 1.0, range(3), symmetry_violation=pen)]))
    row = claims_table(runs, OPTIONS).iloc[0]
    assert row.scale == "log" and row.endpoint == "primary" and row.verdict == "supported"
    assert np.exp(row.delta) == pytest.approx(1 / 200, rel=0.2)
    assert paired_difference(pen, base).p_value > 0.1


def _null_report(rng, n_metrics=25, n_groups=4, n_seeds=5):
    """A report of n_metrics × n_groups comparisons where the penalty does nothing."""
    frames = []
    seed_effect = rng.normal(0, 1, (n_seeds, n_metrics))
    for g in range(n_groups + 1):
        values = np.exp(seed_effect + rng.normal(0, 0.5, (n_seeds, n_metrics)))
        frames.append(_runs("pfn", "none" if g == 0 else "gc", float(g), range(n_seeds),
                            **{f"m{j}": values[:, j] for j in range(n_metrics)}))
    claims = [Claim("simplicity", f"m{j}", -1, f"m{j}", log_scale=bool(j % 2)) for j in range(n_metrics)]
    return claims_table(pd.concat(frames), OPTIONS, claims=claims)


def test_family_wise_rate_of_decided_verdicts_stays_below_alpha_under_the_null():
    rng = np.random.default_rng(1)
    draws = 200
    decided, raw = 0, 0
    for _ in range(draws):
        table = _null_report(rng)
        assert len(table) == 100
        decided += bool((table.verdict != "inconclusive").any())
        raw += bool((table.p_value < OPTIONS.alpha).any())
    alpha = OPTIONS.alpha
    assert decided / draws <= alpha + 2 * np.sqrt(alpha * (1 - alpha) / draws)
    assert raw / draws > 0.9  # without the correction nearly every report would claim something


def test_holm_against_a_hand_computed_case():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm_adjust([0.01, np.nan, 0.6])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_sign_flip_test_is_exact():
    assert sign_flip_p_value(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)
    assert sign_flip_p_value(np.array([1.0, -1.0])) == pytest.approx(1.0)
    assert sign_flip_p_value(np.array([1.0, 1.0, 1.0, -0.1])) == pytest.approx(4 / 16)


def test_paired_interval_and_p_match_the_t_distribution():
    from scipy import stats

    x, y = np.array([1.0, 2.5, 2.0, 4.0]), np.array([0.5, 1.0, 1.9, 2.0])
    diff = paired_difference(x, y)
    ref = stats.ttest_rel(x, y)
    assert diff.p_value == pytest.approx(ref.pvalue) and diff.delta == pytest.approx(np.mean(x - y))
    ci = ref.confidence_interval(0.95)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((ci.low, ci.high))
    assert paired_difference([1.0, 2.0], [1.0, 2.0]).p_value == 1.0


def _delong_quadratic(labels, scores):
    """DeLong's variance straight from the pairwise kernel ψ(x, y) = 1[x > y] + ½·1[x = y] (O(m·n))."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    psi = (pos[:, None] > neg[None]).astype(float) + 0.5 * (pos[:, None] == neg[None])
    v10, v01 = psi.mean(1), psi.mean(0)
    return psi.mean(), np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


def test_delong_standard_error_against_the_quadratic_kernel_and_a_bootstrap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 750)
    scores = np.round(rng.normal(labels * 1.2, 1.0), 1)  # rounded: ties count one half
    auc, se = delong_auc(labels, scores)
    ref_auc, ref_se = _delong_quadratic(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores)) and auc == pytest.approx(ref_auc)
    assert se == pytest.approx(ref_se, rel=1e-10)
    boot = []
    for _ in range(1000):
        i = rng.integers(0, len(labels), len(labels))
        boot.append(roc_auc_score(labels[i], scores[i]))
    assert se == pytest.approx(np.std(boot), rel=0.15)


def test_rejection_binomial_error_and_background_count():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 2000)
    scores = rng.normal(labels * 1.5, 1.0)
    rej = rejection_with_error(labels, scores, 0.3)
    eps_b = 1 / rej.value
    assert rej.n_pass == round(eps_b * 2000)
    assert rej.se == pytest.approx(rej.value * np.sqrt((1 - eps_b) / (eps_b * 2000)))
    m = binary_metrics(labels, scores, "test_")
    assert {"test_auc_se", "test_rej30_se", "test_rej50_se", "test_rej30_n_bkg", "test_rej50_n_bkg"} <= set(m)
    assert m["test_rej30"] == rej.value and m["test_rej30_n_bkg"] == rej.n_pass
    assert 0 < m["test_auc_se"] < 0.02
    perfect = rejection_with_error(labels, labels.astype(float), 0.5)
    assert perfect.value == np.inf and perfect.se == np.inf and perfect.n_pass == 0


def test_spearman_interval():
    x = np.arange(20.0)
    exact = spearman_with_ci(x, x**3)
    assert exact.rho == pytest.approx(1.0) and exact.ci_low == pytest.approx(1.0) and exact.n_runs == 20
    rng = np.random.default_rng(0)
    null = spearman_with_ci(rng.normal(size=40), rng.normal(size=40))
    assert null.ci_low < 0 < null.ci_high


def test_correlation_table_within_each_model():
    rng = np.random.default_rng(0)
    gc = rng.lognormal(0, 0.5, 12)
    runs = pd.DataFrame({"model": ["pfn"] * 6 + ["mlp"] * 6, "penalty": "gc", "lambda": 1.0, "seed": range(12),
                         "geometric_complexity": gc, "gap_auc": 0.01 * gc + rng.normal(0, 1e-4, 12),
                         "student_agreement": rng.normal(0.9, 0.01, 12)})
    table = correlation_table(runs, OPTIONS)
    gap = table[table.outcome == "gap_auc"].set_index("model")
    assert set(gap.index) == {"pfn", "mlp"} and (gap.rho > 0.8).all() and (gap.n_runs == 6).all()
    assert set(table.complexity) == {"geometric_complexity"}


def test_accuracy_flag_and_primary_endpoints():
    seeds = range(3)
    runs = with_group_columns(pd.concat([
        _runs("pfn", "none", 0.0, seeds, test_auc=[0.90, 0.91, 0.92], geometric_complexity=[3.0, 3.1, 3.2],
              robust_rotation_aurc=[0.8] * 3, robust_energy_scale_aurc=[0.8] * 3),
        _runs("pfn", "lorentz", 0.1, seeds, test_auc=[0.90, 0.912, 0.921], geometric_complexity=[1.0, 1.1, 1.05],
              robust_rotation_aurc=[0.8] * 3, robust_energy_scale_aurc=[0.8] * 3),
        _runs("pfn", "lorentz", 1.0, seeds, test_auc=[0.88, 0.885, 0.89], geometric_complexity=[1.0, 1.1, 1.05],
              robust_rotation_aurc=[0.8] * 3, robust_energy_scale_aurc=[0.8] * 3),
    ]))
    table = claims_table(runs, OPTIONS)
    matched = table.groupby("lambda").matched.first()
    assert matched[0.1] and not matched[1.0]
    endpoint = table[table["lambda"] == 0.1].set_index("metric").endpoint
    assert endpoint["geometric_complexity"] == "primary" and endpoint["test_auc"] == "secondary"
    assert endpoint["robust_energy_scale_loss"] == "primary" and endpoint["robust_rotation_loss"] == "secondary"
    restricted = family_verdicts(table, matched_only=True, families=("simplicity",))
    assert restricted[["supported", "contradicted", "inconclusive"]].to_numpy().sum() == 1


def test_options_load_and_validate(tmp_path):
    assert OPTIONS.alpha == 0.05 and OPTIONS.primary["invariance"].metrics == ("symmetry_violation",)
    assert load_options(overrides=["report.alpha=0.01"]).alpha == 0.01
    with pytest.raises(ValueError, match="unknown report option"):
        load_options(overrides=["report.bogus=1"])
    with pytest.raises(ValueError, match="alpha"):
        load_options(overrides=["report.alpha=2"])
    with pytest.raises(ValueError, match="unpaired"):
        load_options(overrides=["report.unpaired=maybe"])


def test_controls_and_learning_curve_points_stay_out_of_the_baseline():
    """The weight-decay control has no penalty but is no baseline; learning-curve runs (data.max_train_jets
    set) share seeds with the main grid but are never paired with it; a re-run (same config_hash) replaces
    the earlier run; the outside-group robustness loss is the primary robustness endpoint."""
    from softsym.report.claims import latest_per_job, main_grid

    seeds = range(4)

    def arm(penalty, lam, control, auc, gc, size="None", decay=1e-4):
        return _runs("pfn", penalty, lam, seeds, test_auc=auc, geometric_complexity=gc, control=control,
                     robust_outside_auc_loss=[0.01] * 4, robust_rotation_auc_loss=[0.02] * 4,
                     **{"data.max_train_jets": size, "train.weight_decay": decay})

    runs = pd.concat([
        arm("none", 0.0, "none", [0.90, 0.91, 0.92, 0.93], [3.0, 3.1, 3.2, 3.3]),
        arm("none", 0.0, "weight_decay", [0.90, 0.91, 0.92, 0.93], [1.0, 1.1, 1.2, 1.3], decay=0.3),
        arm("none", 0.0, "none", [0.70, 0.71, 0.72, 0.73], [9.0, 9.1, 9.2, 9.3], size="600"),
        arm("lorentz", 0.01, "none", [0.90, 0.91, 0.92, 0.93], [2.0, 2.1, 2.2, 2.3]),
    ])
    grouped = with_group_columns(runs)
    assert set(grouped.penalty) == {"none", "weight_decay", "lorentz"}
    assert grouped.loc[grouped.penalty == "weight_decay", "lambda"].eq(0.3).all()
    grid = main_grid(grouped)
    assert len(grid) == 12 and not grid["data.max_train_jets"].eq("600").any()
    table = claims_table(grid, OPTIONS)
    gc = table[table.metric == "geometric_complexity"].set_index("penalty")
    # against the baseline's GC 3.0..3.3 (the 600-jet points with GC 9 are not averaged in): mean log ratio
    ratios = np.array([1.0, 1.1, 1.2, 1.3]) / [3.0, 3.1, 3.2, 3.3]
    assert gc.loc["weight_decay", "delta"] == pytest.approx(np.log(ratios).mean())
    endpoint = table[table.penalty == "lorentz"].set_index("metric").endpoint
    assert endpoint["robust_outside_auc_loss"] == "primary" and endpoint["robust_rotation_auc_loss"] == "secondary"

    reruns = pd.DataFrame({"config_hash": ["a", "b", "a", "b"], "start_time": [1, 2, 3, 4], "model": "pfn",
                           "status": ["FINISHED", "FINISHED", "FINISHED", "KILLED"],
                           "penalty": "none", "lambda": "0", "form": "", "seed": "0", "control": "none"})
    assert sorted(latest_per_job(reruns).start_time) == [2, 3]  # a killed re-run keeps the finished one


def test_ties_infinities_and_the_violation_of_the_penalised_symmetry():
    """Identical differences have no t statistic (the sign-flip p is used); a non-finite value (1/ε_B = inf)
    drops its pair instead of zeroing the comparison; a rotation arm is compared on the rotation violation."""
    tied = paired_difference([0.91, 0.92, 0.93], [0.81, 0.82, 0.83])
    assert tied.p_value == pytest.approx(0.25) and tied.p_value == tied.p_sign_flip
    with_inf = paired_difference([np.inf, 50, 61, 70, 82], [10, 11, 12, 13, 14], log_scale=True)
    assert with_inf.n_pairs == 4 and with_inf.delta > 1 and with_inf.p_value < 0.01
    seeds = range(4)
    runs = with_group_columns(pd.concat([
        _runs("pfn", "none", 0.0, seeds, symmetry_violation=[50.0, 60, 70, 80],
              symmetry_violation_rotation=[1.0, 1.1, 1.2, 1.3]),
        _runs("pfn", "rotation", 0.1, seeds, symmetry_violation=[0.5, 0.55, 0.6, 0.65],
              symmetry_violation_rotation=[0.5, 0.55, 0.6, 0.65]),
    ]))
    row = claims_table(runs, OPTIONS).set_index("metric").loc["symmetry_violation"]
    assert row.delta == pytest.approx(np.log(0.5))  # against the baseline's rotation violation, not its Lorentz one
    # the outside-group robustness loss likewise: over the rotation's outside perturbations for both
    runs = with_group_columns(pd.concat([
        _runs("pfn", "none", 0.0, seeds, robust_outside_auc_loss=[0.01, 0.011, 0.012, 0.013],
              robust_outside_auc_loss_rotation=[0.05, 0.052, 0.049, 0.051]),
        _runs("pfn", "rotation", 0.1, seeds, robust_outside_auc_loss=[0.04, 0.041, 0.043, 0.042],
              robust_outside_auc_loss_rotation=[0.04, 0.041, 0.043, 0.042]),
    ]))
    row = claims_table(runs, OPTIONS).set_index("metric").loc["robust_outside_auc_loss"]
    assert row.delta == pytest.approx(-0.009) and row.verdict == "supported"
