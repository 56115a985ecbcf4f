"""Fit loop, checkpoints and classifier metrics."""

from softsym.training.checkpoint import ModelSpec, load_trained_model, save_trained_model
from softsym.training.loop import FitConfig, FitResult, evaluate_loss, fit, resolve_device, save_checkpoint
from softsym.training.metrics import (
    binary_metrics,
    classification_metrics,
    probabilities,
    task_loss,
)
from softsym.training.predict import predict

__all__ = [
    "FitConfig", "FitResult", "ModelSpec", "binary_metrics", "classification_metrics", "evaluate_loss", "fit",
    "load_trained_model", "predict", "probabilities", "resolve_device",
    "save_checkpoint", "save_trained_model", "task_loss",
]
