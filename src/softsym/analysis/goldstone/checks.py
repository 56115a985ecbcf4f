"""Whether the symmetry directions do what they claim, checked at the model output by forward-mode AD.

A direction v_a reproduces generator G_a when moving the parameters along it changes the logits as moving the
jets along G_a does: J_θf·v_a = J_xf·(G_a x), jet by jet. ``direction_error`` measures

    e_a = ‖J_θf·v_a − J_xf·(G_a x)‖ / max(‖J_xf·(G_a x)‖, √ε_mach ‖f‖)

with the norms over every jet and output of the evaluation set, both sides exact JVPs (``torch.func.jvp``:
in the parameters along v_a, in the 4-vectors along G_a x with the features recomputed); the metric
``goldstone_direction_error`` is max_a e_a. The floor √ε_mach ‖f‖ (‖f‖: the logits' norm over the set)
stands in for the reference of a generator the model is invariant under, where both sides are rounding
noise (e.g. the exactly invariant model); ``goldstone_output_tangent`` = max_a ‖J_xf·(G_a x)‖/‖f‖ says how
far from invariant the model is. On 4-vector inputs with ``method="linear"`` e_a is rounding (< 1e-5 in
float32); on relative features it is whatever the least-squares fit leaves, reported as measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from softsym.analysis.goldstone.directions import SymmetryDirections
from softsym.analysis.matvec import parameter_layout
from softsym.data.jets import move_batch
from softsym.models.base import logits_from_p4
from softsym.physics import compute_features
from softsym.physics.symmetries import SYMMETRIES


@dataclass(frozen=True)
class DirectionCheck:
    generator_names: tuple[str, ...]
    relative: np.ndarray      # [A] e_a (module docstring)
    mismatch: np.ndarray      # [A] ‖J_θf·v_a − J_xf·(G_a x)‖
    reference: np.ndarray     # [A] ‖J_xf·(G_a x)‖
    parameter_side: np.ndarray  # [A] ‖J_θf·v_a‖
    output_norm: float        # ‖f‖ over the evaluation set
    exact: bool               # the directions' method was "linear" and complete

    @property
    def error(self) -> float:
        return float(self.relative.max()) if len(self.relative) else 0.0

    def metrics(self) -> dict[str, float]:
        tangent = float(self.reference.max() / self.output_norm) if len(self.reference) and self.output_norm else 0.0
        return {"goldstone_direction_error": self.error, "goldstone_output_tangent": tangent,
                "goldstone_directions_exact": float(self.exact)}


def parameter_tangent(model: nn.Module, batch, vector, param_names) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, J_θf·v) for one batch and a flat parameter direction ``vector`` in the layout of
    ``param_names`` (``parameter_layout``); the features do not depend on θ and are computed once."""
    layout = parameter_layout(model, list(param_names))
    named = dict(model.named_parameters())
    vector = torch.as_tensor(vector)
    primals = tuple(named[b.name].detach() for b in layout)
    tangents = tuple(vector[b.slice].view(b.shape).to(p) for b, p in zip(layout, primals, strict=True))
    features = compute_features(batch.p4, batch.mask, batch.scalars)
    names = [b.name for b in layout]

    def logits(*params):
        return torch.func.functional_call(model, dict(zip(names, params, strict=True)),
                                          (features, batch.p4, batch.mask))

    return torch.func.jvp(logits, primals, tangents)


def input_tangent(model: nn.Module, batch, generator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, J_xf·(G x)) for one batch and generators ``[B, 4, 4]`` (padding does not move)."""
    tangent = torch.einsum("bjk,bpk->bpj", generator.to(batch.p4), batch.p4)
    tangent = tangent * batch.mask.unsqueeze(-1).to(tangent.dtype)
    return torch.func.jvp(lambda p4: logits_from_p4(model, p4, batch.mask, batch.scalars), (batch.p4,), (tangent,))


def direction_error(model: nn.Module, batches, directions: SymmetryDirections, symmetry: str | None = None, *,
                    generators: Callable | None = None) -> DirectionCheck:
    """The check of the module docstring for the directions of ``symmetry`` (or of
    ``generators(p4, mask) -> [B, A, 4, 4]``), which must be those ``directions`` were built from."""
    if (symmetry is None) == (generators is None):
        raise ValueError("give exactly one of symmetry and generators")
    sym = SYMMETRIES.build(symmetry) if symmetry is not None else None
    was_training = model.training
    model.eval()
    first = next(model.parameters())
    n_gen = directions.vectors.shape[0]
    sq_diff, sq_ref, sq_par = np.zeros(n_gen), np.zeros(n_gen), np.zeros(n_gen)
    sq_out = 0.0
    try:
        for batch in batches:
            batch = move_batch(batch, first.device, first.dtype)
            gens = sym.generators(batch.p4, batch.mask) if sym is not None else generators(batch.p4, batch.mask)
            if gens.shape[1] != n_gen:
                raise ValueError(f"{gens.shape[1]} generators but {n_gen} directions")
            for a in range(n_gen):
                logits, by_params = parameter_tangent(model, batch, directions.vectors[a], directions.param_names)
                _, by_inputs = input_tangent(model, batch, gens[:, a])
                sq_diff[a] += float(((by_params - by_inputs).detach().double() ** 2).sum())
                sq_ref[a] += float((by_inputs.detach().double() ** 2).sum())
                sq_par[a] += float((by_params.detach().double() ** 2).sum())
            sq_out += float((logits.detach().double() ** 2).sum())
    finally:
        model.train(was_training)
    output_norm = float(np.sqrt(sq_out))
    floor = float(np.sqrt(torch.finfo(first.dtype).eps)) * output_norm
    mismatch, reference = np.sqrt(sq_diff), np.sqrt(sq_ref)
    relative = mismatch / np.maximum(reference, max(floor, np.finfo(np.float64).tiny))
    return DirectionCheck(directions.generator_names, relative, mismatch, reference, np.sqrt(sq_par),
                          output_norm, directions.exact)
