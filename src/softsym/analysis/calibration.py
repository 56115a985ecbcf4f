"""Temperature scaling of a tagger's logits (Guo, Pleiss, Sun, Weinberger 2017), so complexity measures that
scale with the logits (geometric complexity, curvature) can be compared at calibrated confidence.

``fit_temperature`` finds T > 0 minimising the mean task loss (BCE on the signal logit, or cross-entropy) of
f/T on a held-out set — the validation split in the complexity stage. With β = 1/T the loss is convex in β
(a log-sum-exp of logits linear in β, minus a linear term), so the 1-D minimum is unique; it is found by
bounded Brent search over log T in [−``log_range``, ``log_range``]. ``tempered(model, T)`` is a copy of the
model whose output is divided by T (a forward hook: parameter names and modules stay those of the model,
so every analysis that addresses parameters by name runs on it unchanged). Geometric complexity scales as
1/T²: GC(f/T) = GC(f)/T².
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from softsym.training.metrics import task_loss
from softsym.training.predict import predict_logits


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    loss: float          # mean task loss of f/T on the fitting set
    loss_at_one: float   # the same at T = 1 (the uncalibrated model)
    n_jets: int


def tempered_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean task loss of ``logits / temperature`` (float64)."""
    return float(task_loss(logits.double() / temperature, labels))


def fit_temperature(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, *,
                    log_range: float = 7.0) -> TemperatureFit:
    """T > 0 minimising the mean task loss of ``logits / T`` (``logits [N, O]``, O = 1 for BCE)."""
    z = torch.as_tensor(logits).double()
    y = torch.as_tensor(np.asarray(labels)).long()
    if z.dim() != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need logits [N, O] and labels [N] with N > 0, got {tuple(z.shape)} and {tuple(y.shape)}")
    res = minimize_scalar(lambda u: tempered_loss(z, y, math.exp(u)), bounds=(-log_range, log_range),
                          method="bounded", options={"xatol": 1e-9})
    t = math.exp(float(res.x))
    return TemperatureFit(t, tempered_loss(z, y, t), tempered_loss(z, y, 1.0), len(y))


def fit_model_temperature(model: nn.Module, batches: Iterable) -> TemperatureFit:
    """``fit_temperature`` on the model's logits over ``batches`` (e.g. the validation split)."""
    logits, labels = predict_logits(model, batches)
    return fit_temperature(logits, labels)


def tempered(model: nn.Module, temperature: float) -> nn.Module:
    """A copy of ``model`` whose forward output is divided by ``temperature`` (same parameter names)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    copy_ = copy.deepcopy(model)
    copy_.register_forward_hook(lambda module, inputs, output: output / temperature)
    return copy_
