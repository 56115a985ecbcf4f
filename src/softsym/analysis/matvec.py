"""The matvec protocol the spectral estimators are written against, and the flat parameter layout.

An operator is anything ``as_matvec`` understands: a ``HessianOperator`` (or any object with ``n``,
``device`` and a ``matvec`` on flat torch vectors), a dense matrix (tensor or array), or a scipy
``LinearOperator`` (any object with ``matvec`` on numpy vectors and ``shape``). The algorithms
(``exact_hessian``, ``lanczos``, the trace estimators, SLQ) are free functions taking one; ``matvec_count``
reads the operator's ``n_matvecs`` counter where it has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class TorchOperator(Protocol):
    """A symmetric operator on flat torch vectors of length ``n`` living on ``device``."""

    n: int
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


def as_matvec(op) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, torch.device]:
    """(float64 flat matvec, n, device) for a ``TorchOperator`` (e.g. ``HessianOperator``), a dense matrix
    (tensor or array), a scipy LinearOperator or any object with ``matvec`` and ``shape``."""
    if isinstance(op, TorchOperator):
        return (lambda v: op.matvec(v).to(torch.float64)), op.n, op.device
    if isinstance(op, np.ndarray):
        op = torch.from_numpy(op)
    if isinstance(op, torch.Tensor):
        mat = op.to(torch.float64)
        return (lambda v: mat @ v.to(mat.device)), int(mat.shape[0]), mat.device
    if hasattr(op, "matvec") and hasattr(op, "shape"):
        def mv(v: torch.Tensor) -> torch.Tensor:
            out = op.matvec(v.detach().cpu().numpy())
            return torch.as_tensor(np.asarray(out), dtype=torch.float64).reshape(-1)
        return mv, int(op.shape[0]), torch.device("cpu")
    raise TypeError(f"cannot use an object of type {type(op).__name__} as a linear operator")


def matvec_count(op) -> int:
    return int(getattr(op, "n_matvecs", 0))


@dataclass(frozen=True)
class ParamBlock:
    """One parameter tensor's slot in the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.numel)


def parameter_layout(model: nn.Module, names: Sequence[str] | None = None) -> list[ParamBlock]:
    """Flat layout of the parameters that require grad (``named_parameters`` order), or of ``names``."""
    named = dict(model.named_parameters())
    if names is None:
        names = [n for n, p in named.items() if p.requires_grad]
    missing = [n for n in names if n not in named]
    if missing:
        raise ValueError(f"unknown parameter names {missing}; the model has {list(named)}")
    order = [n for n in named if n in set(names)]
    blocks, offset = [], 0
    for n in order:
        p = named[n]
        blocks.append(ParamBlock(n, tuple(p.shape), offset, p.numel()))
        offset += p.numel()
    return blocks
