"""Train stage: fit the configured model with task loss + λ · penalty; test metrics, the metrics on every
evaluation set (``data.eval_sets``); invariance violation; the study-arm tags (``group``, ``control``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from softsym.penalties import symmetry_violation
from softsym.physics import N_KINEMATIC
from softsym.physics.symmetries import SYMMETRIES
from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import eval_sets, fit_config, measured_symmetry, penalty, study_tags
from softsym.stages.predictions import save_predictions, split_jets
from softsym.training import ModelSpec, classification_metrics, fit, predict, save_trained_model
from softsym.training.distributed import rank_and_world, wrap_ddp
from softsym.training.eval_sets import evaluate_eval_sets
from softsym.training.objective import penalised_objective

log = logging.getLogger(__name__)


def model_spec(cfg: DictConfig, n_features: int, class_names, scalar_names) -> ModelSpec:
    sizes = cfg.model.sizes
    if cfg.model.size not in sizes:
        raise ValueError(f"model.size={cfg.model.size!r} is not one of {list(sizes)} for model {cfg.model.name}")
    options = OmegaConf.to_container(sizes[cfg.model.size], resolve=True)
    options.update({k: cfg.model[k] for k in ("inputs", "p4_scale") if k in cfg.model})  # model.inputs
    return ModelSpec(cfg.model.name, n_features, tuple(class_names), tuple(scalar_names), options)


@STAGES.register("train")
def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    dataset = ctx.dataset()
    device = ctx.device
    spec = model_spec(cfg, N_KINEMATIC + len(dataset.scalar_names), dataset.class_names, dataset.scalar_names)
    torch.manual_seed(cfg.seed)
    model = spec.build().to(device)
    ctx.tracker.log_metrics({"model_n_params": model.n_params})
    training_penalty = penalty(cfg.penalty)

    t = cfg.train
    rank, world = rank_and_world()
    train_loader = dataset.loader("train", batch_size=t.batch_size, shuffle=True, seed=cfg.seed, device=device,
                                  rank=rank, world_size=world)
    val_loader = dataset.loader("val", batch_size=t.eval_batch_size, device=device)
    checkpoint = Path(cfg.paths.checkpoints) / cfg.mlflow.experiment_name / ctx.training_key() / "last.pt"
    if not t.resume and checkpoint.exists() and rank == 0:
        checkpoint.unlink()
    result = fit(wrap_ddp(model, device), train_loader, val_loader, penalised_objective(training_penalty),
                 fit_config(t, seed=cfg.seed, progress=ctx.progress),
                 checkpoint_path=checkpoint, resume=t.resume, write_checkpoints=rank == 0,
                 on_epoch_end=lambda epoch, m: ctx.tracker.log_metrics(m, step=epoch))
    if t.resume:  # resumed: true, or false with the reason (no checkpoint: it started afresh)
        ctx.tracker.set_tags({"resumed": str(result.resumed_from_epoch is not None).lower(),
                              **({"resume_note": result.resume_note} if result.resume_note else {})})
    if result.resumed_from_epoch is not None:
        log.info("resumed from epoch %d of %s", result.resumed_from_epoch + 1, checkpoint)
        for epoch, metrics in enumerate(result.history[: result.resumed_from_epoch + 1]):
            ctx.tracker.log_metrics(metrics, step=epoch)

    metrics, (labels, probs) = evaluate_model(model, dataset, cfg, device)
    ctx.tracker.log_arrays("test_scores", labels=labels, probs=probs)
    sets = eval_sets(ctx)
    eval_metrics, eval_predictions = evaluate_eval_sets(
        model, sets, class_names=dataset.class_names, batch_size=t.eval_batch_size, device=device,
        reference_auc=metrics.get("test_auc"), reference_auc_se=metrics.get("test_auc_se"))
    metrics.update(eval_metrics)
    ctx.tracker.set_tags(study_tags(cfg))
    metrics.update({"best_epoch": result.best_epoch, "train_seconds": result.seconds,
                    "epochs_run": len(result.history)})
    ctx.tracker.log_metrics(metrics)
    log.info("test: %s", {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")})

    ctx.outputs["model"] = (model, spec)
    if rank == 0:
        model_path = ctx.run_dir / "model.pt"
        save_trained_model(model_path, model, spec)
        ctx.tracker.log_artifact(model_path, "model")
        save_predictions(ctx, "test", labels, probs, split_jets(dataset, "test"), dataset.class_names)
        for name, (set_labels, set_probs) in eval_predictions.items():
            save_predictions(ctx, name, set_labels, set_probs, sets[name], dataset.class_names)


def evaluate_model(model, dataset, cfg: DictConfig, device) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """Test, validation and train metrics (the train–test gap measures generalisation; strengths are chosen
    on the validation AUC, so the test split stays out of the choice), the invariance violations, and the
    test labels and class probabilities."""
    eval_bs = cfg.train.eval_batch_size
    test_loader = dataset.loader("test", batch_size=eval_bs, device=device)
    labels, probs = predict(model, test_loader)
    metrics = classification_metrics(labels, probs, dataset.class_names, prefix="test_")
    for split in ("val", "train"):
        split_labels, split_probs = predict(model, dataset.loader(split, batch_size=eval_bs, device=device))
        metrics.update(classification_metrics(split_labels, split_probs, dataset.class_names, prefix=f"{split}_"))
    if "test_auc" in metrics and "train_auc" in metrics:
        metrics["gap_auc"] = metrics["train_auc"] - metrics["test_auc"]
    for symmetry in SYMMETRIES:
        metrics[f"symmetry_violation_{symmetry}"] = symmetry_violation(model, test_loader, symmetry)
    metrics["symmetry_violation"] = metrics[f"symmetry_violation_{measured_symmetry(cfg.penalty)}"]
    return metrics, (labels, probs)
