"""Robustness stage: AUC, rejection and output shift of the trained model under physics and adversarial
perturbations, as curves over each perturbation's strength grid, on the test split and (the clean AUC and
``robustness.eval_set_perturbations``) on every evaluation set; each perturbation classed inside or outside
the penalised symmetry's group."""

from __future__ import annotations

import json
import logging

from softsym.atomic import write_text_atomic
from softsym.data.loaders import InMemoryLoader
from softsym.progress import progress_bar
from softsym.robustness import INSIDE, evaluate_robustness, plot_robustness_curves
from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import eval_sets, measured_symmetry, perturbation_scans

log = logging.getLogger(__name__)


@STAGES.register("robustness")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    model, _ = ctx.trained_model()
    dataset = ctx.dataset()
    symmetry = measured_symmetry(cfg.penalty)
    test_loader = dataset.loader("test", batch_size=cfg.robustness.batch_size, device=ctx.device)
    batches = progress_bar(test_loader, desc="robustness (test batches)", unit="batch", disable=not ctx.progress)
    result = evaluate_robustness(model, batches, perturbation_scans(cfg), seed=cfg.robustness.seed,
                                 symmetry=symmetry)
    ctx.tracker.log_metrics(result.metrics())
    inside = [name for name, c in result.curves.items() if c.relation == INSIDE]
    ctx.tracker.set_tags({"robust_symmetry": symmetry, "robust_inside": ",".join(inside),
                          "robust_outside": ",".join(n for n in result.curves if n not in inside)})
    out_dir = ctx.run_dir / "robustness"
    for path in plot_robustness_curves(result, out_dir).values():
        ctx.tracker.log_artifact(path, "plots")
    summary = out_dir / "robustness.json"
    record = {"test": result.to_dict()}

    set_scans = perturbation_scans(cfg, names=cfg.robustness.get("eval_set_perturbations") or [])
    for name, arrays in eval_sets(ctx).items():
        loader = InMemoryLoader(arrays, batch_size=cfg.robustness.batch_size, device=ctx.device)
        on_set = evaluate_robustness(model, loader, set_scans, seed=cfg.robustness.seed, symmetry=symmetry)
        prefix = f"robust_eval_{name}_"
        ctx.tracker.log_metrics({f"{prefix}auc": on_set.clean_auc, f"{prefix}rej50": on_set.clean_rej50,
                                 **on_set.metrics(prefix=prefix)})
        record[f"eval_{name}"] = on_set.to_dict()
    write_text_atomic(summary, json.dumps(record, indent=1))
    ctx.tracker.log_artifact(summary)
    log.info("robustness (AURC): %s; outside-group AUC loss %s",
             {k: round(c.aurc, 4) for k, c in result.curves.items()}, result.endpoints.get("outside_auc_loss"))
