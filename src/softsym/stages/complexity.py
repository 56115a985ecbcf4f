"""Complexity stage: loss-Hessian spectrum and pseudo-Goldstone modes, geometric complexity, compressibility."""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from softsym.analysis import (
    HessianOperator,
    analyze_hessian,
    apply_masks,
    compressibility,
    geometric_complexity,
)
from softsym.analysis.calibration import fit_model_temperature, tempered
from softsym.analysis.goldstone.analysis import GoldstoneOptions, analyze_goldstone
from softsym.analysis.goldstone.curvature import curvature_ratio
from softsym.analysis.goldstone.plots import plot_loss_profiles
from softsym.analysis.plots import plot_compression, plot_density, plot_spectrum
from softsym.analysis.trace import estimate_trace
from softsym.data.loaders import InMemoryLoader
from softsym.data.stratify import sample_split
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


def calibrated_curvature_ratio(cfg, tempered_model, eval_batches, directions, progress: bool) -> dict[str, float]:
    """``hessian_goldstone_curvature_ratio_calibrated`` (± se): the curvature ratio of the loss of the tempered
    model f/T along the same symmetry directions (the parametrisation is the model's), against its own trace."""
    h = cfg.complexity.hessian
    op = HessianOperator(tempered_model, eval_batches, **hessian_operator_options(cfg), progress=progress)
    trace = estimate_trace(op, method=h.trace_method, n_matvecs=h.trace_matvecs, seed=cfg.seed + 1)
    ratio = curvature_ratio(op, directions, trace=trace.value, trace_se=trace.std_error)
    return {"hessian_goldstone_curvature_ratio_calibrated": ratio.ratio,
            "hessian_goldstone_curvature_ratio_calibrated_se": ratio.ratio_se,
            "hessian_trace_calibrated": trace.value, "hessian_trace_calibrated_se": trace.std_error}


@STAGES.register("complexity")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    c = cfg.complexity
    progress = ctx.progress and c.progress
    options = hessian_options(cfg, progress=progress)
    model, _ = ctx.trained_model()
    dataset = ctx.dataset()
    # the fixed evaluation set: a seeded, class-stratified sample of `eval_jets` test jets (sample_split)
    eval_arrays = sample_split(dataset, "test", c.eval_jets, cfg.seed)
    eval_batches = list(InMemoryLoader(eval_arrays, batch_size=c.batch_size, device=ctx.device))

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
        g = OmegaConf.to_container(c.goldstone, resolve=True)
        g["symmetry"] = g.get("symmetry") or measured_symmetry(cfg.penalty)
        g = {k: v for k, v in g.items() if k != "enabled"}
        goldstone = analyze_goldstone(op, hess, eval_batches, GoldstoneOptions(
            **g, near_zero_eps=options.near_zero_eps, seed=cfg.seed))
        metrics.update(goldstone.metrics())
        ctx.tracker.log_arrays("goldstone_loss_profiles", **goldstone.profiles.arrays())
        ctx.tracker.log_artifact(plot_loss_profiles(goldstone.profiles, out_dir / "goldstone_loss_profiles.png"),
                                 "plots")

    val_loader = dataset.loader("val", batch_size=cfg.train.eval_batch_size, device=ctx.device)
    if c.gc.enabled:
        metrics["geometric_complexity"] = geometric_complexity(model, eval_batches)
    if c.calibration.enabled:  # temperature fitted on the validation split; GC and curvature of f/T
        fit_t = fit_model_temperature(model, val_loader)
        metrics.update(logit_temperature=fit_t.temperature, logit_temperature_val_loss=fit_t.loss,
                       logit_temperature_val_loss_at_1=fit_t.loss_at_one)
        if c.gc.enabled:  # GC(f/T) = GC(f)/T² exactly (tests/test_geometric.py)
            metrics["geometric_complexity_calibrated"] = metrics["geometric_complexity"] / fit_t.temperature ** 2
        if c.goldstone.enabled:
            metrics.update(calibrated_curvature_ratio(cfg, tempered(model, fit_t.temperature), eval_batches,
                                                      goldstone.directions, progress))

    test_loader = dataset.loader("test", batch_size=cfg.train.eval_batch_size, device=ctx.device)
    compression = compressibility(model, test_loader, select_batches=val_loader,
                                  sparsities=list(c.compress.sparsities),
                                  bits=list(c.compress.bits), per_channel=c.compress.per_channel,
                                  combine=c.compress.combine, tolerance=c.compress.tolerance,
                                  balance=c.compress.balance, finetune=finetune_hook(ctx), progress=ctx.progress)
    metrics.update(compression.metrics())
    ctx.tracker.log_artifact(plot_compression(compression, out_dir / "compression.png"), "plots")
    ctx.tracker.log_metrics(metrics)
    log.info("complexity: %s", {k: round(v, 4) for k, v in metrics.items() if k.startswith(("hessian_t", "geo",
                                                                                             "compressed"))})
