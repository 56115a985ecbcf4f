"""Robustness stage: AUC, rejection and output shift of the trained model under physics and adversarial
perturbations, as curves over each perturbation's strength grid."""

from __future__ import annotations

import json
import logging

from softsym.robustness import evaluate_robustness, plot_robustness_curves
from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import perturbation_scans

log = logging.getLogger(__name__)


@STAGES.register("robustness")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    model, _ = ctx.trained_model()
    dataset = ctx.dataset()
    test_loader = dataset.loader("test", batch_size=cfg.robustness.batch_size, device=ctx.device)
    result = evaluate_robustness(model, test_loader, perturbation_scans(cfg), seed=cfg.robustness.seed)
    ctx.tracker.log_metrics(result.metrics())
    out_dir = ctx.run_dir / "robustness"
    for path in plot_robustness_curves(result, out_dir).values():
        ctx.tracker.log_artifact(path, "plots")
    summary = out_dir / "robustness.json"
    summary.write_text(json.dumps(result.to_dict(), indent=1))
    ctx.tracker.log_artifact(summary)
    log.info("robustness (AURC): %s", {k: round(c.aurc, 4) for k, c in result.curves.items()})
