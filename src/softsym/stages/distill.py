"""Distill stage: a small student learns from the trained teacher's logits; fidelity, speed, robustness."""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import OmegaConf

from softsym.analysis import geometric_complexity
from softsym.distill import KDConfig, build_student, distill, plot_fidelity_curves
from softsym.physics import N_KINEMATIC
from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import fit_config, penalty, perturbation_scans

log = logging.getLogger(__name__)


@STAGES.register("distill")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    teacher, _ = ctx.trained_model()
    dataset = ctx.dataset()
    d = cfg.distill
    device = ctx.device
    student_sizes = OmegaConf.to_container(d.student.sizes[d.student.name], resolve=True)
    student = build_student(d.student.name, n_features=N_KINEMATIC + len(dataset.scalar_names),
                            n_classes=len(dataset.class_names), seed=d.seed, **student_sizes).to(device)
    ctx.tracker.log_metrics({"student_n_params": student.n_params})
    train_loader = dataset.loader("train", batch_size=d.batch_size, shuffle=True, seed=d.seed, device=device)
    val_loader = dataset.loader("val", batch_size=cfg.train.eval_batch_size, device=device)
    test_loader = dataset.loader("test", batch_size=cfg.train.eval_batch_size, device=device)
    result = distill(
        teacher, student, train_loader, val_loader, test_loader,
        kd=KDConfig(d.temperature, d.alpha, d.eval_every),
        fit_config=fit_config(d, seed=d.seed, progress=ctx.progress),
        penalty=penalty(d.penalty) if d.penalty else None,
        robustness_scans=perturbation_scans(cfg, names=d.robustness),
        robustness_seed=cfg.robustness.seed,
        complexity_fn=geometric_complexity,
    )
    ctx.tracker.log_metrics(result.metrics())
    steps, agreement = np.array(result.curve, dtype=float).T
    ctx.tracker.log_arrays("distill_curve", steps=steps, agreement=agreement)
    path = plot_fidelity_curves({f"{cfg.model.name} {cfg.penalty.name} λ={cfg.penalty['lambda']}": result.curve},
                                ctx.run_dir / "distill" / "fidelity.png")
    ctx.tracker.log_artifact(path, "plots")
    log.info("student: %s", {k: round(v, 4) for k, v in result.metrics().items() if not k.startswith("student_r")})
