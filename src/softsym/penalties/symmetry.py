"""Soft symmetry penalties (SEAL, Hebbar et al. 2025) on a jet model's logits.

For generators {G_a} acting on every particle's 4-momentum:

- ``infinitesimal``: mean over jets of Σ_a ‖ d/dε f(exp(ε G_a)·x) |_{ε=0} ‖² = Σ_a ‖ J_f(x) · (G_a x) ‖²,
  an exact Jacobian-vector product (automatic differentiation, never finite differences).
- ``finite``: mean over jets of ‖ f(g·x) − f(x) ‖² for group elements g = exp(Σ_a θ_a G_a) with θ_a drawn
  uniformly in the configured range (angles for rotations, rapidities for boosts).

Features are recomputed from the transformed 4-vectors (``logits_from_p4``), so the model sees a
physically transformed jet. The jet-axis symmetries use the axis of the untransformed jet, held fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.penalties.deep_sets import deep_sets_penalty, supports_deep_sets_penalty
from softsym.penalties.registry import PENALTIES
from softsym.physics.lorentz import act
from softsym.physics.symmetries import SYMMETRIES, sample_group_elements, symmetry_generators

FORMS = ("infinitesimal", "finite")


def _couples_jets(model: nn.Module) -> bool:
    """Batch norm in training mode mixes jets of a batch, so d(Σ_b f_b)/dx_b is not jet b's own gradient."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


def generator_derivatives(model: nn.Module, batch: JetBatch, generators: torch.Tensor,
                          mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[B, O]`` and their derivatives along each generator, J_f · (G_a x), ``[A, B, O]``.

    Two exact ways; ``auto`` picks the cheaper one measured in benchmarks/bench_penalty.py:
    - ``forward`` (``torch.func.jvp``): all A tangent directions in one pass over the batch repeated A
      times; works for every model and output size, and costs ~A forward passes;
    - ``reverse``, for a single output: one input gradient ∇_x f per jet (create_graph) contracted with
      every G_a x, so the cost does not grow with A; it was faster than forward mode even for A = 1.
      Not used when batch norm in training mode couples the jets of a batch.
    """
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be auto, forward or reverse, got {mode!r}")
    n_gen = generators.shape[1]
    tangents = torch.einsum("bajk,bpk->abpj", generators, batch.p4)  # G_a x for every particle
    n_out = getattr(getattr(model, "module", model), "n_outputs", None)  # DDP wraps the model
    reverse_ok = n_out == 1 and not _couples_jets(model)
    if mode == "reverse" and not reverse_ok:
        raise ValueError("reverse mode needs a single-output model without batch norm in training mode")
    if mode == "reverse" or (mode == "auto" and reverse_ok):
        differentiable = torch.is_grad_enabled()  # training needs the graph; measuring does not
        with torch.enable_grad():
            p4 = batch.p4.detach().requires_grad_(True)
            logits = logits_from_p4(model, p4, batch.mask, batch.scalars)
            (grad,) = torch.autograd.grad(logits.sum(), p4, create_graph=differentiable)
        if not differentiable:
            logits = logits.detach()
        return logits, torch.einsum("bpj,abpj->ab", grad, tangents).unsqueeze(-1)

    reps = (n_gen, 1, 1)

    def logits_of(p4: torch.Tensor) -> torch.Tensor:
        return logits_from_p4(model, p4, batch.mask.repeat(n_gen, 1), batch.scalars.repeat(*reps))

    primal, tangent_out = torch.func.jvp(logits_of, (batch.p4.repeat(*reps),), (tangents.flatten(0, 1),))
    size = batch.p4.shape[0]
    return primal[:size], tangent_out.unflatten(0, (n_gen, size))


def infinitesimal_penalty(model: nn.Module, batch: JetBatch, symmetry: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mean_b Σ_a ‖J_f · G_a x‖²); the logits come free with the derivative pass.

    A ReLU PFN takes the exact hand-written path of ``deep_sets.py`` (~1.3x a plain step instead of ~2x);
    every other model, and the PFN under DDP (whose forward must run through the wrapper), the autograd one.
    """
    generators, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
    if supports_deep_sets_penalty(model) and not batch.p4.requires_grad:
        return deep_sets_penalty(model, batch.p4, batch.mask, batch.scalars, generators)
    logits, derivs = generator_derivatives(model, batch, generators)
    return logits, derivs.pow(2).sum(dim=(0, 2)).mean()


def finite_penalty(model: nn.Module, batch: JetBatch, symmetry: str, *, max_angle: float, max_rapidity: float,
                   rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mean_b ‖f(g·x) − f(x)‖²) with one sampled g per jet.

    f(x) and f(g·x) are evaluated from the same random-number state, so a model with dropout applies the
    same dropout masks to both and the penalty measures the transformation alone.
    """
    g = sample_group_elements(symmetry, batch.p4, batch.mask, max_angle=max_angle, max_rapidity=max_rapidity,
                              rng=rng)
    devices = [batch.p4.device] if batch.p4.device.type == "cuda" else []
    cpu_state = torch.get_rng_state()
    cuda_states = [torch.cuda.get_rng_state(d) for d in devices]
    logits = logits_from_p4(model, batch.p4, batch.mask, batch.scalars)
    torch.set_rng_state(cpu_state)
    for d, state in zip(devices, cuda_states, strict=True):
        torch.cuda.set_rng_state(state, d)
    transformed = logits_from_p4(model, act(g, batch.p4), batch.mask, batch.scalars)
    return logits, (transformed - logits).pow(2).sum(-1).mean()


@dataclass(frozen=True)
class SymmetryPenalty:
    """A configured soft symmetry penalty: ``loss = task + weight · penalty``.

    ``weight == 0`` short-circuits to a plain forward pass, so λ = 0 reproduces the unpenalised run bit
    for bit (no extra random numbers drawn, no different kernels).
    """

    symmetry: str
    form: str = "infinitesimal"
    weight: float = 0.0
    max_angle: float = 3.141592653589793
    max_rapidity: float = 0.5
    # Fraction of each batch's jets the penalty is evaluated on (a random subset): 1.0 is the exact batch
    # mean; smaller values give an unbiased estimate of the same expectation at a fraction of the cost.
    batch_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.batch_fraction <= 1:
            raise ValueError(f"penalty.batch_fraction must be in (0, 1], got {self.batch_fraction}")
        if self.symmetry not in SYMMETRIES:
            raise ValueError(f"penalty symmetry {self.symmetry!r} is unknown; expected one of {SYMMETRIES.names()}")
        if self.form not in FORMS:
            raise ValueError(f"penalty.form {self.form!r} is unknown; expected one of {FORMS}")
        if self.weight < 0:
            raise ValueError(f"penalty.lambda must be >= 0, got {self.weight}")

    def __call__(self, model: nn.Module, batch: JetBatch,
                 rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, penalty value) for one batch."""
        if self.batch_fraction < 1:
            n_sub = max(1, round(self.batch_fraction * len(batch)))
            index = torch.randperm(len(batch), generator=rng)[:n_sub].to(batch.p4.device)
            subset = JetBatch(batch.p4[index], batch.mask[index], batch.labels[index], batch.scalars[index])
            _, value = self._evaluate(model, subset, rng)
            return logits_from_p4(model, batch.p4, batch.mask, batch.scalars), value
        return self._evaluate(model, batch, rng)

    def _evaluate(self, model: nn.Module, batch: JetBatch,
                  rng: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.form == "infinitesimal":
            return infinitesimal_penalty(model, batch, self.symmetry)
        return finite_penalty(model, batch, self.symmetry, max_angle=self.max_angle,
                              max_rapidity=self.max_rapidity, rng=rng)


@torch.no_grad()
def symmetry_violation(model: nn.Module, batches, symmetry: str) -> float:
    """Mean infinitesimal violation Σ_a ‖J_f · G_a x‖² of a trained model over ``batches`` (jet-weighted)."""
    total, count = 0.0, 0
    for batch in batches:
        _, value = infinitesimal_penalty(model, batch, symmetry)
        total += float(value) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def _symmetry_penalty_builder(symmetry: str):
    def build(*, weight: float = 0.0, **options) -> SymmetryPenalty:
        named = options.pop("symmetry", symmetry)
        if named != symmetry:
            raise ValueError(f"penalty {symmetry!r} imposes symmetry {symmetry!r}, but penalty.symmetry={named!r}")
        return SymmetryPenalty(symmetry, weight=weight, **options)

    build.__name__ = build.__qualname__ = f"{symmetry}_penalty"
    build.__doc__ = (f"``penalty={symmetry}``: the soft {symmetry} symmetry penalty; options are the fields of "
                     f"``SymmetryPenalty`` (form, max_angle, max_rapidity, batch_fraction).")
    return build


for _symmetry in SYMMETRIES:
    PENALTIES.register(_symmetry)(_symmetry_penalty_builder(_symmetry))
