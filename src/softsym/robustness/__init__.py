"""Robustness of trained taggers: perturbations of the 4-vectors and of the inputs, attacks (in feature space
and in 4-vector space), curves, endpoints inside and outside the penalised symmetry's group, plots."""

from softsym.robustness import attacks  # noqa: F401  (registers feature_noise, fgsm, pgd, p4_pgd)
from softsym.robustness.attacks import MomentumPGD, moved_p4, particle_masses
from softsym.robustness.endpoints import auc_contrast, auc_loss, mean_auc_loss
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
    INSIDE,
    OUTSIDE,
    PERTURBATIONS,
    FeaturePerturbation,
    MomentumPerturbation,
    Perturbation,
    delta_r_to_axis,
)
from softsym.robustness.plots import plot_robustness_curve, plot_robustness_curves

__all__ = [
    "INSIDE", "OUTSIDE", "PERTURBATIONS", "FeaturePerturbation", "MomentumPGD", "MomentumPerturbation",
    "Perturbation", "PerturbationScan", "RobustnessCurve", "RobustnessPoint", "RobustnessResult",
    "area_under_robustness_curve", "auc_contrast", "auc_loss", "delta_r_to_axis", "evaluate_robustness",
    "format_strength", "mean_auc_loss", "moved_p4", "particle_masses", "plot_robustness_curve",
    "plot_robustness_curves", "scans_from_config", "signal_score",
]
