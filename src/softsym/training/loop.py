"""The fit loop shared by the train and distill stages: AdamW, cosine LR, early stopping, resumable checkpoints.

An objective ``loss_fn(model, batch, training) -> (loss, components)`` says what is minimised: the train
stage passes task loss + λ·penalty, the distill stage the KD loss. Validation uses ``training=False``.

A checkpoint is written atomically after every epoch with everything a continuation needs (weights,
optimiser, scheduler, RNG states, early-stopping state, history); ``resume=True`` picks it up, and since
batch order depends only on (seed, epoch) the resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import pickle
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from softsym.atomic import write_atomic
from softsym.data.jets import JetBatch
from softsym.progress import progress_bar

log = logging.getLogger(__name__)
LossFn = Callable[[nn.Module, JetBatch, bool], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    patience: int = 5
    grad_clip: float | None = 5.0
    seed: int = 0
    progress: bool = True


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    resume_note: str | None = None  # resume asked for, but there was no checkpoint: why it started afresh
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_checkpoint(obj: dict, path: Path) -> None:
    """torch.save through a temporary name, so a killed job never leaves a half-written checkpoint."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


class CheckpointError(ValueError):
    """A checkpoint or model file that cannot be read; names the file and what to do."""


RESUME_KEYS = ("model", "optimizer", "scheduler", "torch_rng", "best_model", "history", "best_epoch",
               "best_val_loss", "epoch", "bad_epochs", "step")


def load_checkpoint(path: Path, *, required: tuple[str, ...] = (), advice: str = "",
                    map_location: torch.device | str | None = None) -> dict:
    """``torch.load`` of a file this project wrote; a corrupt, truncated or foreign file raises
    ``CheckpointError`` naming ``path``, the cause and ``advice`` (what the user can do)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is corrupt or not a torch file ({cause}){'; ' + advice if advice else ''}") \
            from exc
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is incomplete or not a softsym checkpoint: it lacks {missing}"
                              f"{'; ' + advice if advice else ''}")
    return state


def _lr_lambda(cfg: FitConfig) -> Callable[[int], float]:
    def factor(epoch: int) -> float:
        if epoch < cfg.warmup_epochs:
            return (epoch + 1) / (cfg.warmup_epochs + 1)
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return factor


@torch.no_grad()
def evaluate_loss(model: nn.Module, loader: Iterable[JetBatch], loss_fn: LossFn) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        loss, parts = loss_fn(model, batch, False)
        n = len(batch)
        for name, value in {"loss": loss, **parts}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * n
        count += n
    return {k: v / max(count, 1) for k, v in sums.items()}


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (checkpoints store it without the wrapper)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def fit(model: nn.Module, train_loader, val_loader, loss_fn: LossFn, cfg: FitConfig, *,
        checkpoint_path: Path | None = None, resume: bool = False, write_checkpoints: bool = True,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        on_step: Callable[[int, nn.Module], None] | None = None) -> FitResult:
    """Train ``model`` in place; at the end it holds the weights of the best validation epoch.

    Under DDP pass the wrapped model; every rank validates on the whole validation set (so all ranks take
    the same early-stopping decision) and only the rank with ``write_checkpoints`` writes the checkpoint.
    """
    torch.manual_seed(cfg.seed)
    core = unwrap(model)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    result = FitResult()
    best_state = copy.deepcopy(core.state_dict())
    start_epoch, bad_epochs, step = 0, 0, 0

    if resume and checkpoint_path is not None and not checkpoint_path.exists():
        result.resume_note = f"no checkpoint at {checkpoint_path}: training started from the first epoch"
        log.warning("train.resume=true, but %s", result.resume_note)
    elif resume and checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path, required=RESUME_KEYS, advice=(
            "delete it to train from the first epoch, or run with train.resume=false (which replaces it)"))
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        best_state = state["best_model"]
        result.history = state["history"]
        result.best_epoch, result.best_val_loss = state["best_epoch"], state["best_val_loss"]
        start_epoch, bad_epochs, step = state["epoch"] + 1, state["bad_epochs"], state["step"]
        result.resumed_from_epoch = state["epoch"]
        if state.get("stopped_early"):
            start_epoch = cfg.epochs
            result.stopped_early = True

    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_loader.set_epoch(epoch)
        sums: dict[str, float] = {}
        count = 0
        bar = progress_bar(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
        # A streaming loader gives each DDP rank its own files, so ranks may run out of batches a step or two
        # apart: join() lets the finished ones shadow the others' gradient all-reduces instead of hanging.
        uneven = model.join() if isinstance(model, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()
        with uneven:
            for batch in bar:
                loss, parts = loss_fn(model, batch, True)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                n = len(batch)
                for name, value in {"loss": loss.detach(), **parts}.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * n
                count += n
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                if on_step is not None:
                    on_step(step, model)
        scheduler.step()
        val = evaluate_loss(model, val_loader, loss_fn)
        metrics = {f"train_{k}": v / max(count, 1) for k, v in sums.items()}
        metrics.update({f"val_{k}": v for k, v in val.items()})
        metrics["lr"] = optimizer.param_groups[0]["lr"]
        result.history.append(metrics)
        if val["loss"] < result.best_val_loss:
            result.best_val_loss, result.best_epoch, bad_epochs = val["loss"], epoch, 0
            best_state = copy.deepcopy(core.state_dict())
        else:
            bad_epochs += 1
        result.stopped_early = bad_epochs >= cfg.patience
        if checkpoint_path is not None and write_checkpoints:
            save_checkpoint({
                "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "best_model": best_state, "history": result.history, "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss, "epoch": epoch, "bad_epochs": bad_epochs,
                "step": step, "stopped_early": result.stopped_early,
            }, checkpoint_path)
        if distributed:
            torch.distributed.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if result.stopped_early:
            break
    core.load_state_dict(best_state)
    result.seconds = time.perf_counter() - t0
    return result
