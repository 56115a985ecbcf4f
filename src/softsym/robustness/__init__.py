"""Robustness of trained taggers: perturbations of the 4-vectors and of the inputs, attacks, curves, plots."""

from softsym.robustness.evaluate import (
    PerturbationScan,
    RobustnessCurve,
    RobustnessPoint,
    RobustnessResult,
    area_under_robustness_curve,
    evaluate_robustness,
    format_strength,
    scans_from_config,
    signal_score,
)
from softsym.robustness.perturbations import (
    PERTURBATIONS,
    FeaturePerturbation,
    MomentumPerturbation,
    Perturbation,
)
from softsym.robustness.plots import plot_robustness_curve, plot_robustness_curves

__all__ = [
    "PERTURBATIONS", "FeaturePerturbation", "MomentumPerturbation", "Perturbation", "PerturbationScan",
    "RobustnessCurve", "RobustnessPoint", "RobustnessResult", "area_under_robustness_curve",
    "evaluate_robustness", "format_strength", "plot_robustness_curve",
    "plot_robustness_curves", "scans_from_config", "signal_score",
]
