"""Complexity stage: loss-Hessian spectrum and pseudo-Goldstone modes, geometric complexity, compressibility."""

from __future__ import annotations

import logging

from softsym.analysis import (
    HessianOperator,
    analyze_hessian,
    apply_masks,
    compressibility,
    geometric_complexity,
    goldstone_overlap,
    symmetry_directions,
)
from softsym.analysis.plots import plot_compression, plot_density, plot_spectrum
from softsym.data.loaders import InMemoryLoader
from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import fit_config, hessian_operator_options, hessian_options, measured_symmetry
from softsym.training import fit
from softsym.training.objective import penalised_objective

log = logging.getLogger(__name__)


def finetune_hook(ctx: StageContext):
    """A short masked fine-tune of each pruned copy (``complexity.compress.finetune_epochs`` > 0)."""
    cfg = ctx.cfg
    epochs = cfg.complexity.compress.finetune_epochs
    if not epochs:
        return None
    dataset = ctx.dataset()
    settings = fit_config(seed=cfg.seed, progress=False, epochs=epochs, lr=cfg.train.lr * 0.1)

    def finetune(model, masks) -> None:
        train = dataset.loader("train", batch_size=cfg.train.batch_size, shuffle=True, seed=cfg.seed, device=ctx.device)
        val = dataset.loader("val", batch_size=cfg.train.eval_batch_size, device=ctx.device)
        fit(model, train, val, penalised_objective(None), settings,
            on_step=lambda step, m: apply_masks(m, masks))  # pruned weights stay zero after every step

    return finetune


@STAGES.register("complexity")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    c = cfg.complexity
    progress = ctx.progress and c.progress
    options = hessian_options(cfg, progress=progress)
    model, _ = ctx.trained_model()
    dataset = ctx.dataset()
    eval_set = InMemoryLoader(dataset.arrays("test", max_jets=c.eval_jets), batch_size=c.batch_size, device=ctx.device)
    eval_batches = list(eval_set)  # the fixed evaluation set: the first `eval_jets` test jets

    op = HessianOperator(model, eval_batches, **hessian_operator_options(cfg), progress=progress)
    hess = analyze_hessian(op, options=options)
    metrics = dict(hess.metrics)
    metrics["hessian_graph_mb"] = op.graph_bytes / 2**20
    out_dir = ctx.run_dir / "complexity"
    ctx.tracker.log_artifact(plot_spectrum(hess.eigenvalues, out_dir / "hessian_eigenvalues.png",
                                           near_zero_eps=options.near_zero_eps), "plots")
    if hess.density is not None:
        ctx.tracker.log_artifact(plot_density(hess.density, out_dir / "hessian_density.png"), "plots")
        ctx.tracker.log_arrays("hessian_spectrum", grid=hess.density.grid, density=hess.density.density,
                               eigenvalues=hess.eigenvalues)

    if c.goldstone.enabled:
        symmetry = c.goldstone.symmetry or measured_symmetry(cfg.penalty)
        directions = symmetry_directions(op.model, eval_batches, symmetry, layer=c.goldstone.layer,
                                         param_names=op.names)
        if hess.exact is not None:
            overlap = goldstone_overlap(directions, eigenvalues=hess.exact.eigenvalues,
                                        eigenvectors=hess.exact.eigenvectors, near_zero_eps=options.near_zero_eps)
        else:
            overlap = goldstone_overlap(directions, op=op, lambda_max=hess.lambda_max,
                                        near_zero_eps=options.near_zero_eps,
                                        near_zero_frac=metrics.get("hessian_near_zero_frac"),
                                        n_steps=c.goldstone.quadrature_steps, seed=cfg.seed)
        metrics.update(overlap.metrics())

    if c.gc.enabled:
        metrics["geometric_complexity"] = geometric_complexity(model, eval_batches)

    test_loader = dataset.loader("test", batch_size=cfg.train.eval_batch_size, device=ctx.device)
    compression = compressibility(model, test_loader, sparsities=list(c.compress.sparsities),
                                  bits=list(c.compress.bits), per_channel=c.compress.per_channel,
                                  combine=c.compress.combine, tolerance=c.compress.tolerance,
                                  finetune=finetune_hook(ctx), progress=ctx.progress)
    metrics.update(compression.metrics())
    ctx.tracker.log_artifact(plot_compression(compression, out_dir / "compression.png"), "plots")
    ctx.tracker.log_metrics(metrics)
    log.info("complexity: %s", {k: round(v, 4) for k, v in metrics.items() if k.startswith(("hessian_t", "geo",
                                                                                             "compressed"))})
