"""The strengths table: planted AUC costs and GC ratios are recovered, paired by seed, with intervals that hold
them; the reference arm is the accuracy-matched symmetry group with the largest λ; a control is comparable
only within the configured factor of it."""

import numpy as np
import pandas as pd
import pytest

from softsym.report.claims import with_group_columns
from softsym.report.options import ReportOptions
from softsym.report.strengths import STRENGTH_COLUMNS, strength_table, strengths_section

SEEDS = range(5)
# Seed effects shared by every arm (the pairing removes them) and a per-run noise: arm k draws the noise of
# seed s + shift (shift 1–4 for every arm but the baseline's 0), a permutation, so the mean log ratio over
# the seeds is the planted factor exactly while the pairs still scatter.
SEED_AUC = np.array([0.0, 0.004, -0.003, 0.002, -0.001])
SEED_GC = np.array([1.0, 1.3, 0.8, 1.1, 0.9])
NOISE = np.array([0.01, -0.01, 0.005, -0.005, 0.0])


def _runs(arms):
    """arms: (penalty, λ, control, AUC factor, GC factor[, relative AUC noise, default 0.01 × NOISE]) → one run
    per seed."""
    rows = []
    for k, (penalty, lam, control, auc_factor, gc_factor, *auc_noise) in enumerate(arms):
        for seed in SEEDS:
            shift = 0 if k == 0 else (k - 1) % (len(NOISE) - 1) + 1
            noise = NOISE[(seed + shift) % len(NOISE)]
            auc = (0.95 + SEED_AUC[seed]) * auc_factor * (1 + noise * (auc_noise or [0.01])[0])
            rows.append({"model": "pfn", "penalty": penalty, "lambda": str(lam), "seed": str(seed),
                         "control": control, "train.weight_decay": lam if control == "weight_decay" else 1e-4,
                         "val_auc": auc, "test_auc": auc * 0.999,
                         "geometric_complexity": 12.0 * SEED_GC[seed] * gc_factor * (1 + noise),
                         "geometric_complexity_calibrated": 3.0 * SEED_GC[seed] * gc_factor})
    return with_group_columns(pd.DataFrame(rows))


ARMS = [("none", 0.0, "none", 1.0, 1.0),
        ("lorentz", 0.003, "none", 0.995, 0.5),    # matched (cost 0.5%): the reference
        ("lorentz", 0.1, "none", 0.95, 0.2),       # not matched (cost 5%)
        ("gc", 0.01, "gc", 0.998, 0.55),           # comparable to the reference (×1.1)
        ("gc", 0.1, "gc", 0.97, 0.05),             # far below it (×0.1)
        ("none", 3.0, "weight_decay", 1.0, 0.9)]   # far above it (×1.8)


def test_planted_costs_and_ratios_are_recovered_with_intervals():
    full = strength_table(_runs(ARMS), ReportOptions(comparable_gc_factor=1.5))
    assert tuple(full.columns) == STRENGTH_COLUMNS
    table = full.set_index(["penalty", "lambda"])
    assert ("none", 0.0) not in table.index
    for penalty, lam, _, auc_factor, gc_factor in ARMS[1:]:
        key = ("weight_decay" if penalty == "none" else penalty, lam)
        row = table.loc[key]
        assert row.n_pairs == 5
        assert row.val_auc_cost == pytest.approx(1 - auc_factor, rel=1e-6)
        assert row.val_auc_cost_low <= 1 - auc_factor <= row.val_auc_cost_high
        assert row.gc_ratio == pytest.approx(gc_factor, rel=1e-9)
        assert row.gc_ratio_low <= gc_factor <= row.gc_ratio_high
        assert row.gc_calibrated_ratio == pytest.approx(gc_factor, rel=1e-9)
    assert table.loc[("lorentz", 0.003), "role"] == "reference"
    assert table.loc[("lorentz", 0.1), "role"] == "symmetry"
    gc_near, gc_far, decay = table.loc[("gc", 0.01)], table.loc[("gc", 0.1)], table.loc[("weight_decay", 3.0)]
    assert gc_near.gc_ratio_to_reference == pytest.approx(1.1, rel=1e-9) and gc_near.comparable_gc
    assert gc_far.gc_ratio_to_reference == pytest.approx(0.1, rel=1e-9) and not gc_far.comparable_gc
    assert decay.gc_ratio_to_reference == pytest.approx(1.8, rel=1e-9) and not decay.comparable_gc
    assert table.loc[("lorentz", 0.1), "comparable_gc"] is None  # a symmetry arm is not a control


def test_the_reference_arm_is_matched_at_95_percent_confidence():
    """A mean cost of 0.5% whose interval reaches past 1% does not make a λ the matched arm."""
    arms = [ARMS[0], ("lorentz", 0.001, "none", 0.998, 0.7), ("lorentz", 0.003, "none", 0.995, 0.5)]
    precise = strength_table(_runs(arms)).set_index("lambda")
    assert precise.loc[0.003, "role"] == "reference" and precise.loc[0.003, "val_auc_cost_high"] < 0.01
    arms[2] = (*arms[2], 1.0)  # the same mean cost, measured with a large spread
    noisy = strength_table(_runs(arms)).set_index("lambda")
    assert noisy.loc[0.003, "val_auc_cost"] == pytest.approx(0.005, rel=0.02)
    assert noisy.loc[0.003, "val_auc_cost_high"] > 0.01 and noisy.loc[0.003, "role"] == "symmetry"
    assert noisy.loc[0.001, "val_auc_cost_high"] < 0.01 and noisy.loc[0.001, "role"] == "reference"


def test_comparability_follows_the_factor_and_needs_a_matched_symmetry_arm():
    wide = strength_table(_runs(ARMS), ReportOptions(comparable_gc_factor=2.0)).set_index(["penalty", "lambda"])
    assert wide.loc[("weight_decay", 3.0), "comparable_gc"]
    no_reference = strength_table(_runs([a for a in ARMS if a[1] != 0.003]))
    assert set(no_reference["role"]) == {"symmetry", "control"}
    assert no_reference["gc_ratio_to_reference"].isna().all()
    assert no_reference["comparable_gc"].isna().all()


def test_section_shows_every_group_and_the_rule():
    options = ReportOptions()
    lines = strengths_section(strength_table(_runs(ARMS), options), options)
    text = "\n".join(lines)
    assert "## Strengths of the arms" in text and "[×0.67, ×1.5]" in text
    assert text.count("| pfn |") == len(ARMS) - 1
    assert "| pfn | gc | 0.01 | control | 5 |" in text
    with pytest.raises(ValueError, match="comparable_gc_factor"):
        ReportOptions(comparable_gc_factor=1.0)
