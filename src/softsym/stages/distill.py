"""Distill stage: small students learn from the trained teacher's logits; fidelity, speed, robustness.

One student per size of ``distill.transfer_jets`` (null: the whole training split, the main student whose
metrics are ``student_*``; a number: a seeded, stratified subsample of the training split, metrics
``student_transfer_<n>_*``), each measured on the test split and on every evaluation set
(``student[_transfer_<n>]_eval_<set>_{auc,agreement,kl}``). ``teacher_auc`` and ``teacher_eval_<set>_auc``
let the report compare teachers at matched AUC.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import OmegaConf

from softsym.analysis import geometric_complexity
from softsym.data.loaders import InMemoryLoader
from softsym.data.stratify import stratified_subsample
from softsym.distill import KDConfig, build_student, distill, fidelity_metrics, matched_epochs, plot_fidelity_curves
from softsym.physics import N_KINEMATIC
from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import eval_sets, fit_config, penalty, perturbation_scans

log = logging.getLogger(__name__)
TRANSFER_STREAM = 4  # random stream of the transfer-set subsamples (beside the splits' own)


def transfer_sizes(sizes) -> tuple[list[int | None], int | None]:
    """The sizes of ``distill.transfer_jets`` and the main one (null if listed, else the largest)."""
    sizes = list(sizes) if sizes is not None else [None]
    if not sizes:
        sizes = [None]
    main = None if None in sizes else max(sizes)
    return sizes, main


@STAGES.register("distill")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    teacher, _ = ctx.trained_model()
    dataset = ctx.dataset()
    d = cfg.distill
    device = ctx.device
    student_sizes = OmegaConf.to_container(d.student.sizes[d.student.name], resolve=True)
    val_loader = dataset.loader("val", batch_size=cfg.train.eval_batch_size, device=device)
    test_loader = dataset.loader("test", batch_size=cfg.train.eval_batch_size, device=device)
    sets = {name: InMemoryLoader(arrays, batch_size=cfg.train.eval_batch_size, device=device)
            for name, arrays in eval_sets(ctx).items()}
    sizes, main = transfer_sizes(d.get("transfer_jets"))
    train_arrays = dataset.arrays("train") if any(s is not None for s in sizes) else None
    n_full = len(train_arrays) if train_arrays is not None else None
    curves, metrics = {}, {}
    for size in sizes:
        is_main = size == main
        student = build_student(d.student.name, n_features=N_KINEMATIC + len(dataset.scalar_names),
                                n_classes=len(dataset.class_names), seed=d.seed, **student_sizes).to(device)
        epochs = d.epochs
        if size is None:
            train_loader = dataset.loader("train", batch_size=d.batch_size, shuffle=True, seed=d.seed, device=device)
        else:
            subset = train_arrays.subset(stratified_subsample(train_arrays.labels, size, seed=d.seed,
                                                              stream=TRANSFER_STREAM))
            train_loader = InMemoryLoader(subset, batch_size=d.batch_size, shuffle=True, seed=d.seed, device=device)
            if d.get("match_steps", True):
                epochs = matched_epochs(d.epochs, n_full, len(subset))
        result = distill(
            teacher, student, train_loader, val_loader, test_loader,
            kd=KDConfig(d.temperature, d.alpha, d.eval_every),
            fit_config=fit_config(d, seed=d.seed, progress=ctx.progress, epochs=epochs),
            penalty=penalty(d.penalty) if d.penalty else None,
            robustness_scans=perturbation_scans(cfg, names=d.robustness) if is_main else (),
            robustness_seed=cfg.robustness.seed,
            complexity_fn=geometric_complexity if is_main else None,
        )
        prefix = "student_" if is_main else f"student_transfer_{size}_"
        metrics.update({prefix + k.removeprefix("student_"): v for k, v in result.metrics().items()})
        if is_main:
            metrics["student_n_params"] = float(student.n_params)
        if size is not None:
            metrics[f"{prefix}transfer_jets"] = float(len(subset))
        for name, loader in sets.items():
            on_set, teacher_auc = fidelity_metrics(teacher, student, loader, f"{prefix}eval_{name}_")
            metrics.update(on_set)
            metrics[f"teacher_eval_{name}_auc"] = teacher_auc
        curves[f"transfer {size if size is not None else 'all'}"] = result.curve
        if is_main:
            steps, agreement = np.array(result.curve, dtype=float).T
            ctx.tracker.log_arrays("distill_curve", steps=steps, agreement=agreement)
            metrics["teacher_auc"] = fidelity_metrics(teacher, student, test_loader, "student_")[1]
    ctx.tracker.log_metrics(metrics)
    label = f"{cfg.model.name} {cfg.penalty.name} λ={cfg.penalty['lambda']}"
    path = plot_fidelity_curves({f"{label} ({k})" if len(curves) > 1 else label: c for k, c in curves.items()},
                                ctx.run_dir / "distill" / "fidelity.png")
    ctx.tracker.log_artifact(path, "plots")
    log.info("student: %s", {k: round(v, 4) for k, v in metrics.items()
                             if k.startswith("student_") and "_robust_" not in k and "_eval_" not in k})
