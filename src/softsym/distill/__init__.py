"""Teacher → student knowledge distillation and the student's fidelity, robustness and complexity."""

from softsym.distill.kd import (
    DistillResult,
    Fidelity,
    KDConfig,
    build_student,
    collect_logits,
    decision_agreement,
    distill,
    fidelity,
    fidelity_metrics,
    kd_loss,
    kd_objective,
    kl_divergence,
    matched_epochs,
    steps_to_fraction,
    two_class_logits,
    working_point_decisions,
)
from softsym.distill.plots import plot_fidelity_curves

__all__ = [
    "DistillResult", "Fidelity", "KDConfig", "build_student", "collect_logits", "decision_agreement",
    "distill", "fidelity", "fidelity_metrics", "kd_loss", "kd_objective", "kl_divergence", "matched_epochs",
    "plot_fidelity_curves",
    "steps_to_fraction", "two_class_logits", "working_point_decisions",
]
