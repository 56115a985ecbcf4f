"""Knowledge distillation: the loss, the fidelity metrics, and a distilled student that follows its teacher."""

import numpy as np
import pytest
import torch

from softsym.data.loaders import InMemoryLoader
from softsym.data.synthetic import synthetic_jets
from softsym.distill import (
    KDConfig,
    build_student,
    decision_agreement,
    distill,
    kd_loss,
    kd_objective,
    kl_divergence,
    plot_fidelity_curves,
    steps_to_fraction,
    two_class_logits,
)
from softsym.penalties import SymmetryPenalty
from softsym.robustness import scans_from_config
from softsym.training import FitConfig, fit, task_loss
from softsym.training.objective import penalised_objective

TINY_MLP = {"n_particles": 16, "hidden_sizes": [32]}


def test_single_logit_is_the_two_class_softmax():
    z = torch.randn(50, 1)
    probs = torch.softmax(two_class_logits(z), -1)
    assert torch.allclose(probs[:, 1], torch.sigmoid(z[:, 0]))
    kl = kl_divergence(z, z + 0.3, temperature=2.0)
    p, q = torch.sigmoid(z[:, 0] / 2), torch.sigmoid((z[:, 0] + 0.3) / 2)
    assert torch.allclose(kl, p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q)), atol=1e-6)


@pytest.mark.parametrize("n_out", [1, 3])
def test_kd_loss_mixes_soft_targets_and_labels(n_out):
    torch.manual_seed(0)
    student, teacher = torch.randn(40, n_out), torch.randn(40, n_out)
    labels = torch.randint(0, max(n_out, 2), (40,))
    loss, parts = kd_loss(student, teacher, labels, temperature=3.0, alpha=0.7)
    assert torch.allclose(parts["kd"], 9.0 * kl_divergence(teacher, student, 3.0).mean())
    assert torch.allclose(parts["ce"], task_loss(student, labels))
    assert torch.allclose(loss, 0.7 * parts["kd"] + 0.3 * parts["ce"])
    same, _ = kd_loss(teacher, teacher, labels, temperature=3.0, alpha=1.0)
    assert same.abs() < 1e-6


def test_students_start_from_the_same_weights_whatever_the_global_rng():
    sizes = {"phi_sizes": [8], "latent_dim": 4, "head_sizes": [8]}
    a = build_student("pfn", n_features=8, n_classes=2, seed=5, **sizes)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    b = build_student("pfn", n_features=8, n_classes=2, seed=5, **sizes)
    assert torch.equal(torch.rand(3), expected)  # the global stream is left where it was
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_agreement_compares_decisions_at_each_models_own_half_signal_cut():
    is_signal = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    teacher = np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.85, 0.0, 0.0])
    # the student's scores are on another scale (calibration differs), same ordering except one background jet
    student = teacher * 10 + 100
    student[5] = 100.5
    assert decision_agreement(teacher, teacher * 10 + 100, is_signal) == 1.0
    assert decision_agreement(teacher, student, is_signal) == 7 / 8
    assert steps_to_fraction([(0, 0.5), (10, 0.8), (20, 0.96), (30, 0.97)], final=1.0) == 20
    assert steps_to_fraction([(0, 0.5), (10, 0.8)], final=1.0) == 10


def test_penalty_enters_the_student_loss_only_while_training(toy_jets):
    teacher = build_student("mlp", n_features=8, n_classes=2, seed=0, **TINY_MLP)
    student = build_student("mlp", n_features=8, n_classes=2, seed=1, **TINY_MLP)
    batch = toy_jets.subset(slice(0, 32)).to_batch()
    kd = KDConfig(temperature=2.0, alpha=0.5)
    penalised = kd_objective(teacher, kd, SymmetryPenalty("rotation", "infinitesimal", weight=0.3))
    loss, parts = penalised(student, batch, True)
    plain_loss, plain_parts = kd_objective(teacher, kd)(student, batch, True)
    assert torch.allclose(loss, plain_loss + 0.3 * parts["penalty"], atol=1e-6) and parts["penalty"] > 0
    val_loss, val_parts = penalised(student, batch, False)
    assert torch.allclose(val_loss, plain_loss) and "penalty" not in val_parts


def test_distilled_student_agrees_more_with_its_teacher_than_a_label_trained_one(tmp_path):
    """The teacher sees only the 4 hardest particles, so its decisions differ from what the labels teach a
    student that sees 16: distillation must transfer the teacher's function, not just the task."""
    jets = synthetic_jets(500, max_particles=16, seed=2)
    train, val, test = jets.subset(slice(0, 600)), jets.subset(slice(600, 800)), jets.subset(slice(800, None))
    teacher = build_student("mlp", n_features=8, n_classes=2, seed=123, n_particles=4, hidden_sizes=[32])
    fit(teacher, InMemoryLoader(train, batch_size=32, shuffle=True), InMemoryLoader(val, batch_size=256),
        penalised_objective(None), FitConfig(epochs=5, lr=3e-3, progress=False))
    scans = scans_from_config({"rotation": {"strengths": [0.0, 1.0]}, "boost": {"strengths": [-0.3, 0.0, 0.3]}})
    complexity_calls = []

    def complexity(model, batches):
        complexity_calls.append(model)
        return 1.5

    def run(alpha):
        student = build_student("mlp", n_features=8, n_classes=2, seed=1, **TINY_MLP)
        return distill(teacher, student, InMemoryLoader(train, batch_size=32, shuffle=True, seed=0),
                       InMemoryLoader(val, batch_size=256), InMemoryLoader(test, batch_size=256),
                       kd=KDConfig(temperature=2.0, alpha=alpha, eval_every=10),
                       fit_config=FitConfig(epochs=8, lr=3e-3, patience=100, progress=False),
                       robustness_scans=scans, complexity_fn=complexity)

    labels_only, distilled = run(0.0), run(0.9)
    assert distilled.fidelity.agreement > labels_only.fidelity.agreement + 0.05
    assert distilled.fidelity.kl < labels_only.fidelity.kl
    assert distilled.fidelity.auc > 0.9
    # the same start and the same batches: only the objective differs
    assert labels_only.curve[0] == distilled.curve[0]
    assert [s for s, _ in distilled.curve] == list(range(0, 8 * 19 + 1, 10))
    metrics = distilled.metrics()
    assert {"student_auc", "student_agreement", "student_kl", "student_steps_to_95", "student_robust_rotation_aurc",
            "student_robust_boost_auc_-0.3", "student_geometric_complexity"} <= set(metrics)
    assert 0 < metrics["student_steps_to_95"] <= distilled.curve[-1][0] and len(complexity_calls) == 2
    path = plot_fidelity_curves({"labels only": labels_only.curve, "distilled": distilled.curve}, tmp_path / "f.png")
    assert path.stat().st_size > 1000
