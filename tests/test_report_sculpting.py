"""The predictions checks of the report: rejection in pT bins and mass sculpting, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from softsym.report.sculpting import (
    cut_at_efficiency,
    js_divergence,
    mass_sculpting,
    pt_bin_rejection,
    pt_edges,
    rejection,
)


def _columns(n: int, *, sculpt: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.repeat([0, 1], n)
    mass = np.where(label == 0, rng.exponential(60.0, 2 * n), rng.normal(172.0, 15.0, 2 * n))
    pt = rng.uniform(500.0, 700.0, 2 * n)
    score = rng.random(2 * n) * 0.7 + 0.3 * label  # overlapping classes: some background passes
    if sculpt:  # a tagger that learnt the mass: background near the top mass passes
        score = np.where(label == 0, np.exp(-((mass - 172.0) / 30.0) ** 2), score)
    return {"score_QCD": 1 - score, "score_Tbqq": score, "label": label, "jet_pt": pt, "jet_sdmass": mass}


def test_js_divergence_is_scipys_squared_distance():
    rng = np.random.default_rng(1)
    for _ in range(5):
        p, q = rng.integers(0, 20, 12).astype(float), rng.integers(0, 20, 12).astype(float)
        assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9)
    assert js_divergence(np.ones(4), 3 * np.ones(4)) == pytest.approx(0.0, abs=1e-15)


def test_rejection_and_its_binomial_error():
    scores = np.r_[np.full(10, 0.9), np.full(90, 0.1)]
    rej, se, n = rejection(scores, 0.5)
    eff = 0.1
    assert (rej, n) == (pytest.approx(10.0), 100) and se == pytest.approx(np.sqrt(eff * (1 - eff) / 100) / eff**2)
    assert rejection(scores, 0.95)[0] == np.inf


def test_cut_per_pt_bin_keeps_half_the_signal_of_each_bin():
    columns = _columns(4000, sculpt=False)
    edges = pt_edges(columns["jet_pt"][columns["label"] == 0])
    assert len(edges) == 5
    rows = pt_bin_rejection(columns, edges)
    score, label, pt = columns["score_Tbqq"], columns["label"], columns["jet_pt"]
    for b, (rej, se, n_bkg) in enumerate(rows):
        low = -np.inf if b == 0 else edges[b]  # jets beyond the outer edges count in the outer bins
        high = np.inf if b == len(rows) - 1 else edges[b + 1]
        inside = (pt >= low) & (pt < high)
        cut = cut_at_efficiency(score[inside & (label == 1)])
        assert np.mean(score[inside & (label == 1)] >= cut) == pytest.approx(0.5, abs=0.01)
        assert rej == pytest.approx(1 / np.mean(score[inside & (label == 0)] >= cut))
        assert n_bkg == int((inside & (label == 0)).sum()) and 0 < se < rej


def test_a_mass_blind_tagger_does_not_sculpt_and_a_mass_tagger_does():
    blind, sculpted = mass_sculpting(_columns(3000, sculpt=False)), mass_sculpting(_columns(3000, sculpt=True))
    assert blind.jsd < 3 * blind.jsd_se + 0.01
    assert sculpted.jsd > 0.3 and sculpted.jsd > 10 * sculpted.jsd_se
    assert blind.before.sum() == 3000 - np.sum(_columns(3000, sculpt=False)["jet_sdmass"][:3000] >= 300)
