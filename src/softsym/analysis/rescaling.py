"""The positive rescaling symmetry of ReLU units, and the balanced representative of a model's orbit.

For a hidden unit i between two linear layers with a positively homogeneous map between them (ReLU, a
masked sum over particles, ...), multiplying the unit's incoming weights and bias by c > 0 and its outgoing
weights by 1/c leaves the function unchanged. Magnitude pruning and per-tensor quantisation are not
invariant under it, so a rescaled copy of a model would compress differently. ``balance_relu_units`` maps a
model to the one point of its rescaling orbit that minimises the sum of squared weights of the rescalable
pairs: coordinate descent, each step setting unit i's c = (‖out_i‖² / ‖in_i‖²)^{1/4}, which equalises the
unit's incoming (weights and bias) and outgoing norms. The objective Σ e^{2(u_i − u_j)} W_ij² + e^{2u_i} b_i²
is convex in the log-scales u, so every point of an orbit descends to the same minimum: a rescaled copy
balances to the same weights (up to the stopping tolerance).

Which pairs are rescalable is checked, not assumed: ``rescalable_pairs`` takes consecutive ``nn.Linear``
modules (A, B) with A.out_features == B.in_features and keeps those for which a random rescaling of all of
A's units leaves the model's logits on a batch unchanged (float64). A unit that feeds a normalisation, a
second consumer (a shortcut) or a non-homogeneous activation fails the check and is left as it is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from softsym.models.base import logits_from_p4


@dataclass(frozen=True)
class Balanced:
    model: nn.Module                      # the balanced copy (same function, the caller's dtype)
    pairs: tuple[tuple[str, str], ...]    # (producer, consumer) Linear modules that were balanced
    n_units: int                          # hidden units balanced
    sweeps: int                           # coordinate-descent sweeps to convergence


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def _rescale(a: nn.Linear, b: nn.Linear, c: torch.Tensor) -> None:
    a.weight.mul_(c[:, None])
    if a.bias is not None:
        a.bias.mul_(c)
    b.weight.div_(c[None, :])


@torch.no_grad()
def rescalable_pairs(model: nn.Module, batch, *, seed: int = 0, rtol: float = 1e-9) -> list[tuple[str, str]]:
    """(producer, consumer) names of consecutive Linear layers whose units rescale without changing the
    model's logits on ``batch`` (checked in float64 with a seeded random c ∈ [e^-1, e])."""
    probe = copy.deepcopy(model).double().eval()
    p4, mask, scalars = batch.p4.double(), batch.mask, batch.scalars.double()
    reference = logits_from_p4(probe, p4, mask, scalars)
    scale = float(reference.abs().max()) + 1.0
    layers = _linears(probe)
    rng = torch.Generator().manual_seed(seed)
    pairs = []
    for (name_a, a), (name_b, b) in zip(layers[:-1], layers[1:], strict=True):
        if a.out_features != b.in_features:
            continue
        c = torch.exp(2 * torch.rand(a.out_features, generator=rng, dtype=torch.float64) - 1)
        _rescale(a, b, c)
        moved = float((logits_from_p4(probe, p4, mask, scalars) - reference).abs().max())
        _rescale(a, b, 1 / c)
        if moved <= rtol * scale:
            pairs.append((name_a, name_b))
    return pairs


@torch.no_grad()
def balance_relu_units(model: nn.Module, batch, *, tol: float = 1e-10, max_sweeps: int = 500) -> Balanced:
    """A copy of ``model`` on the balanced point of its ReLU-rescaling orbit (module docstring); the pairs
    come from ``rescalable_pairs(model, batch)``."""
    pairs = rescalable_pairs(model, batch)
    dtype = next(model.parameters()).dtype
    work = copy.deepcopy(model).double()
    modules = dict(work.named_modules())
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007 (the count is returned)
        worst = 0.0
        for name_a, name_b in pairs:
            a, b = modules[name_a], modules[name_b]
            inc = (a.weight ** 2).sum(1) + (a.bias ** 2 if a.bias is not None else 0.0)
            out = (b.weight ** 2).sum(0)
            ok = (inc > 0) & (out > 0)  # a unit without incoming or outgoing weights stays as it is
            c = torch.where(ok, (out / torch.where(ok, inc, 1.0)) ** 0.25, torch.ones_like(inc))
            _rescale(a, b, c)
            worst = max(worst, float(c.log().abs().max()))
        if worst < tol:
            break
    n_units = sum(modules[a].out_features for a, _ in pairs)
    return Balanced(work.to(dtype), tuple(pairs), n_units, sweeps)
