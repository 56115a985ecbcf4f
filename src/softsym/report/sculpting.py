"""pT dependence and mass sculpting from the per-jet predictions (``predictions/test.*`` of each train stage).

Per run, on its test jets:

- background rejection 1/ε_B at ε_S = 0.5 in bins of jet pT (``pt_bin_rejection``): the cut is set inside each
  bin so that half its signal jets pass, ε_B = k/n over the bin's n background jets with binomial error
  σ(1/ε_B) = √(ε_B(1−ε_B)/n) / ε_B²;
- mass sculpting (``mass_sculpting``): the QCD soft-drop mass distribution of all background jets against that
  of the background jets passing the global cut at ε_S = 0.5, as the Jensen–Shannon divergence (base 2, in
  [0, 1]; 0: the cut leaves the shape unchanged) of the two histograms, with a seeded bootstrap error over the
  background jets.

The signal score is p(signal) for two classes and 1 − p(QCD) otherwise (as the robustness stage's). Groups
(model, penalty, λ) are compared with their baseline paired by seed (``softsym.report.statistics``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SIGNAL_EFFICIENCY = 0.5
MASS_EDGES = np.linspace(0.0, 300.0, 31)  # GeV
N_PT_BINS = 4
BOOTSTRAP = 200


def signal_score(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    scores = [k for k in columns if k.startswith("score_")]
    if len(scores) < 2:
        raise ValueError(f"predictions need a score column per class, found {scores}")
    return np.asarray(columns[scores[1]] if len(scores) == 2 else 1.0 - np.asarray(columns[scores[0]]), float)


def cut_at_efficiency(signal_scores: np.ndarray, efficiency: float = SIGNAL_EFFICIENCY) -> float:
    """The score threshold that ``efficiency`` of the signal jets pass (score >= threshold)."""
    return float(np.quantile(np.asarray(signal_scores, float), 1.0 - efficiency, method="inverted_cdf"))


def rejection(background_scores: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """(1/ε_B, its binomial standard error, n background jets); inf when none pass."""
    n = len(background_scores)
    k = int(np.sum(np.asarray(background_scores) >= threshold))
    if n == 0:
        return float("nan"), float("nan"), 0
    if k == 0:
        return float("inf"), float("nan"), n
    eff = k / n
    return 1.0 / eff, float(np.sqrt(eff * (1 - eff) / n) / eff**2), n


def pt_edges(pts: np.ndarray, n_bins: int = N_PT_BINS) -> np.ndarray:
    """Bin edges at the quantiles of the pooled background jet pT (the same bins for every run)."""
    return np.unique(np.quantile(np.asarray(pts, float), np.linspace(0, 1, n_bins + 1)))


def pt_bin_rejection(columns: Mapping[str, np.ndarray], edges: np.ndarray) -> list[tuple[float, float, int]]:
    """1/ε_B at ε_S = 0.5 (cut set inside the bin), its error and the background count, per pT bin; jets
    beyond the outer edges count in the outer bins."""
    score, label, pt = signal_score(columns), np.asarray(columns["label"]), np.asarray(columns["jet_pt"], float)
    which = np.clip(np.searchsorted(edges, pt, side="right") - 1, 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        sig, bkg = (which == b) & (label != 0), (which == b) & (label == 0)
        if not sig.any() or not bkg.any():
            out.append((float("nan"), float("nan"), int(bkg.sum())))
            continue
        out.append(rejection(score[bkg], cut_at_efficiency(score[sig])))
    return out


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (base 2) of two histograms (normalised here)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / m[keep])))

    return 0.5 * kl(p) + 0.5 * kl(q)


@dataclass(frozen=True)
class Sculpting:
    jsd: float
    jsd_se: float
    before: np.ndarray  # background soft-drop mass histogram, all jets (counts over MASS_EDGES)
    after: np.ndarray   # the same for the jets passing the cut


def mass_sculpting(columns: Mapping[str, np.ndarray], *, edges: np.ndarray = MASS_EDGES, seed: int = 0,
                   n_boot: int = BOOTSTRAP) -> Sculpting:
    score, label = signal_score(columns), np.asarray(columns["label"])
    mass = np.asarray(columns["jet_sdmass"], float)
    threshold = cut_at_efficiency(score[label != 0])
    bkg_mass, passed = mass[label == 0], score[label == 0] >= threshold
    before = np.histogram(bkg_mass, edges)[0]
    after = np.histogram(bkg_mass[passed], edges)[0]
    jsd = js_divergence(before, after)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(bkg_mass), len(bkg_mass))
        draws.append(js_divergence(np.histogram(bkg_mass[pick], edges)[0],
                                   np.histogram(bkg_mass[pick][passed[pick]], edges)[0]))
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    return Sculpting(jsd, float(draws.std(ddof=1)) if len(draws) > 1 else float("nan"), before, after)
