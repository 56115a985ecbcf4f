"""Knowledge distillation (Hinton, Vinyals, Dean 2015) of a trained teacher into a small student.

Loss: α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1−α)·CE(z_s, y). A single signal logit z is the two-class
model with logits [0, z] (softmax([0, z]) = [1 − σ(z), σ(z)]), so binary and multi-class go through the same
softmax KL, and the CE term is the training task loss (``softsym.training.metrics.task_loss``: BCE for one
logit).

The student is trained by ``softsym.training.fit`` with a KD objective; the teacher's logits are computed on the
fly (eval mode, no grad) for each batch, so the student sees exactly the batches of the loader. Students of
different teachers are comparable: ``build_student`` initialises from a seed of its own and the loader's
batch order depends only on (seed, epoch).

Fidelity, on an evaluation set (the test set):
- ``student_auc``: the student's AUC (signal score as in ``softsym.robustness.signal_score``).
- ``student_agreement``: fraction of jets on which teacher and student make the same decision at the 50%
  signal-efficiency working point, where each model's threshold is the one on its own score that accepts
  50% of the true signal jets of the set (so a calibration difference is not counted as disagreement).
- ``student_kl``: mean over jets of KL(teacher ‖ student) of the class probabilities at T = 1.
The learning curve is the agreement on the validation set every ``eval_every`` optimiser steps (and at step
0); ``student_steps_to_95`` is the first recorded step at which it reaches 95% of the returned student's
agreement on the same set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models import MODELS, JetModel, logits_from_p4
from softsym.robustness.evaluate import PerturbationScan, RobustnessResult, evaluate_robustness, signal_score
from softsym.training.loop import FitConfig, FitResult, LossFn, fit
from softsym.training.metrics import binary_metrics, task_loss
from softsym.training.predict import predict_logits

ComplexityFn = Callable[[nn.Module, Iterable[JetBatch]], float]


def two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` signal logits z → ``[B, 2]`` logits [0, z]; multi-class logits unchanged."""
    return torch.cat([torch.zeros_like(logits), logits], -1) if logits.shape[-1] == 1 else logits


def kl_divergence(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """Per-jet KL(softmax(z_t/T) ‖ softmax(z_s/T)) ``[B]``."""
    log_t = F.log_softmax(two_class_logits(teacher_logits) / temperature, -1)
    log_s = F.log_softmax(two_class_logits(student_logits) / temperature, -1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            temperature: float, alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(α·T²·KL + (1−α)·CE, its parts). T² keeps the soft-target gradients at the scale of the CE term."""
    kd = temperature**2 * kl_divergence(teacher_logits, student_logits, temperature).mean()
    ce = task_loss(student_logits, labels)
    return alpha * kd + (1 - alpha) * ce, {"kd": kd.detach(), "ce": ce.detach()}


@dataclass(frozen=True)
class KDConfig:
    temperature: float = 4.0
    alpha: float = 0.9
    eval_every: int = 50  # optimiser steps between points of the fidelity learning curve

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"distill.alpha must be in [0, 1], got {self.alpha}")
        if self.eval_every < 1:
            raise ValueError(f"distill.eval_every must be >= 1, got {self.eval_every}")


def kd_objective(teacher: nn.Module, kd: KDConfig, penalty=None) -> LossFn:
    """A ``loss_fn(model, batch, training)`` for ``fit``: the KD loss against ``teacher`` on each batch.

    ``penalty`` (optional, as built by ``softsym.penalties.PENALTIES``: ``penalty(model, batch) ->
    (logits, value)`` with a ``weight``) adds weight·value while training; its forward pass also gives the
    student's logits. Validation measures the KD loss alone, so early stopping compares like with like.
    """
    active = penalty is not None and penalty.weight > 0
    teacher.eval()

    def loss_fn(model: nn.Module, batch: JetBatch, training: bool):
        with torch.no_grad():
            teacher_logits = logits_from_p4(teacher, batch.p4, batch.mask, batch.scalars)
        if training and active:
            logits, value = penalty(model, batch)
        else:
            logits, value = logits_from_p4(model, batch.p4, batch.mask, batch.scalars), None
        loss, parts = kd_loss(logits, teacher_logits, batch.labels, temperature=kd.temperature,
                              alpha=kd.alpha)
        if value is None:
            return loss, parts
        return loss + penalty.weight * value, {**parts, "penalty": value.detach()}

    return loss_fn


def build_student(name: str, *, n_features: int, n_classes: int, seed: int, **sizes: Any) -> JetModel:
    """Student ``name`` (``mlp`` or ``pfn``) initialised from ``seed`` alone (the global RNG is left as it
    was), so students of different teachers start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS.build(name, n_features=n_features, n_classes=n_classes, **sizes)


collect_logits = predict_logits  # (logits, labels) of a model over batches, mode restored


def working_point_decisions(scores: np.ndarray, is_signal: np.ndarray,
                            signal_efficiency: float = 0.5) -> np.ndarray:
    """Accept (True) per jet at the cut on ``scores`` that accepts ``signal_efficiency`` of the signal."""
    threshold = np.quantile(scores[is_signal], 1 - signal_efficiency)
    return scores >= threshold


def decision_agreement(teacher_scores: np.ndarray, student_scores: np.ndarray, is_signal: np.ndarray,
                       signal_efficiency: float = 0.5) -> float:
    """Fraction of jets with the same decision, each model at its own ε_S = ``signal_efficiency`` cut."""
    return float(np.mean(working_point_decisions(teacher_scores, is_signal, signal_efficiency)
                         == working_point_decisions(student_scores, is_signal, signal_efficiency)))


@dataclass(frozen=True)
class Fidelity:
    auc: float
    agreement: float
    kl: float


def fidelity(teacher_logits: torch.Tensor, student_logits: torch.Tensor, labels: np.ndarray) -> Fidelity:
    """The student's AUC, its decision agreement with the teacher at ε_S = 0.5 and the mean KL at T = 1."""
    is_signal = labels != 0
    student_scores = signal_score(student_logits).double().numpy()
    teacher_scores = signal_score(teacher_logits).double().numpy()
    return Fidelity(
        auc=binary_metrics(is_signal.astype(int), student_scores)["auc"],
        agreement=decision_agreement(teacher_scores, student_scores, is_signal),
        kl=float(kl_divergence(teacher_logits, student_logits).mean()),
    )


def fidelity_metrics(teacher: nn.Module, student: nn.Module, batches: Iterable[JetBatch],
                     prefix: str) -> tuple[dict[str, float], float]:
    """(``<prefix>{auc,agreement,kl}`` of ``student`` against ``teacher`` on ``batches``, an evaluation set;
    the teacher's own AUC there, so that teachers can be compared at matched AUC)."""
    teacher_logits, labels = collect_logits(teacher, batches)
    student_logits, _ = collect_logits(student, batches)
    f = fidelity(teacher_logits, student_logits, labels)
    teacher_auc = binary_metrics((labels != 0).astype(int), signal_score(teacher_logits).double().numpy())["auc"]
    return {f"{prefix}auc": f.auc, f"{prefix}agreement": f.agreement, f"{prefix}kl": f.kl}, teacher_auc


def matched_epochs(epochs: int, n_full: int, n_transfer: int) -> int:
    """Epochs over a transfer set of ``n_transfer`` jets that make as many optimiser steps as ``epochs`` over
    ``n_full`` jets, so students of different transfer-set sizes differ only by their data."""
    return max(epochs, round(epochs * n_full / max(n_transfer, 1)))


def steps_to_fraction(curve: Sequence[tuple[int, float]], final: float, fraction: float = 0.95) -> int:
    """First recorded step whose value reaches ``fraction``·``final``; the last recorded step if none does."""
    return next((step for step, value in curve if value >= fraction * final), curve[-1][0])


@dataclass
class DistillResult:
    fidelity: Fidelity                 # on the evaluation (test) set
    curve: list[tuple[int, float]]     # (optimiser step, agreement on the validation set)
    final_val_agreement: float         # the returned student's agreement on the validation set
    steps_to_95: int
    fit: FitResult
    robustness: RobustnessResult | None = None
    geometric_complexity: float | None = None

    def metrics(self) -> dict[str, float]:
        """``student_auc``, ``student_agreement``, ``student_kl``, ``student_steps_to_95``, the student's
        ``student_robust_<perturbation>_...`` and ``student_geometric_complexity`` where computed."""
        out = {"student_auc": self.fidelity.auc, "student_agreement": self.fidelity.agreement,
               "student_kl": self.fidelity.kl, "student_steps_to_95": float(self.steps_to_95),
               "student_val_agreement": self.final_val_agreement}
        if self.robustness is not None:
            out.update(self.robustness.metrics(prefix="student_robust_"))
        if self.geometric_complexity is not None:
            out["student_geometric_complexity"] = self.geometric_complexity
        return out


def distill(teacher: nn.Module, student: nn.Module, train_loader, val_loader,
            eval_batches: Iterable[JetBatch], *, kd: KDConfig, fit_config: FitConfig, penalty=None,
            robustness_scans: Sequence[PerturbationScan] = (), robustness_seed: int = 0,
            complexity_fn: ComplexityFn | None = None, checkpoint_path: Path | None = None,
            resume: bool = False) -> DistillResult:
    """Train ``student`` (in place) from the fixed ``teacher`` with ``fit`` and the KD objective; measure it.

    ``eval_batches``: the set for the fidelity metrics, the robustness scans (``robustness_scans``, e.g. the
    rotation and boost scans of the robustness config) and ``complexity_fn(student, eval_batches)`` —
    the stage passes ``softsym.analysis.geometric_complexity``. A resumed fit records the curve from the
    resume point on only.
    """
    teacher_val, val_labels = collect_logits(teacher, val_loader)
    val_is_signal = val_labels != 0
    teacher_val_scores = signal_score(teacher_val).double().numpy()

    def val_agreement(model: nn.Module) -> float:
        logits, _ = collect_logits(model, val_loader)
        return decision_agreement(teacher_val_scores, signal_score(logits).double().numpy(), val_is_signal)

    resuming = resume and checkpoint_path is not None and checkpoint_path.exists()
    curve = [] if resuming else [(0, val_agreement(student))]

    def record(step: int, model: nn.Module) -> None:
        if step % kd.eval_every == 0:
            curve.append((step, val_agreement(model)))

    fit_result = fit(student, train_loader, val_loader, kd_objective(teacher, kd, penalty), fit_config,
                     checkpoint_path=checkpoint_path, resume=resume, on_step=record)
    final_val = val_agreement(student)
    teacher_eval, labels = collect_logits(teacher, eval_batches)
    student_eval, _ = collect_logits(student, eval_batches)
    return DistillResult(
        fidelity=fidelity(teacher_eval, student_eval, labels),
        curve=curve,
        final_val_agreement=final_val,
        steps_to_95=steps_to_fraction(curve, final_val) if curve else 0,
        fit=fit_result,
        robustness=(evaluate_robustness(student, eval_batches, robustness_scans, seed=robustness_seed)
                    if robustness_scans else None),
        geometric_complexity=complexity_fn(student, eval_batches) if complexity_fn is not None else None,
    )
