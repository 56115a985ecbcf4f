"""The structural null space of the loss Hessian: flat directions that have nothing to do with the input
symmetry, reported apart from the pseudo-Goldstone count.

- ``hessian_gn_rank_bound`` = min(n, N_jets · n_outputs): H = JᵀH_ℓJ + Σ ℓ'·∇²f, and the Gauss–Newton part
  JᵀH_ℓJ has rank ≤ the rows of J (one per jet and output of the evaluation set), so at least
  n − N·O of its eigenvalues are exactly zero whatever the model; near a minimum, where the second part is
  small, so is most of the spectrum of H.
- ``hessian_dead_units``: hidden units of ``nn.ReLU`` layers that are inactive (output 0) on every real
  particle (per-particle layers) or every jet of the evaluation set; each makes its incoming weights and bias
  and its outgoing weights flat (``hessian_dead_unit_directions`` = Σ over dead units of fan-in + 1 + fan-out).
- ``hessian_rescaling_symmetries``: one per hidden ReLU unit between two linear layers (ReLU(cz) = c·ReLU(z)
  for c > 0: the incoming row and bias times c, the outgoing column over c leave f unchanged). Candidates are
  found from the order the forward pass runs its modules (a Linear, then a ReLU on its output, then the next
  Linear of the same width); each candidate layer is confirmed by a JVP: the infinitesimal rescaling of all
  its units (random coefficients) must leave the logits unchanged to √ε_mach relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softsym.data.jets import move_batch, particle_rows
from softsym.models.base import logits_from_p4
from softsym.physics import compute_features


# |J_θf·r| / |J_θf·r_in| below which a rescaling r (r_in: its incoming part alone) counts as a symmetry:
# √ε_mach of the model's dtype (3e-4 in float32, where the two parts cancel to rounding only; 1.5e-8 in float64).
def _rescaling_tolerance(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps ** 0.5


@dataclass(frozen=True)
class StructuralNullSpace:
    gn_rank_bound: int
    dead_units: int
    dead_unit_directions: int
    rescaling_symmetries: int
    n_relu_units: int

    def metrics(self) -> dict[str, float]:
        return {"hessian_gn_rank_bound": float(self.gn_rank_bound), "hessian_dead_units": float(self.dead_units),
                "hessian_dead_unit_directions": float(self.dead_unit_directions),
                "hessian_rescaling_symmetries": float(self.rescaling_symmetries),
                "hessian_relu_units": float(self.n_relu_units)}


def _trace_modules(model: nn.Module, batch):
    """Run the model once; return the executed (module name, module, input, output) of every Linear/ReLU."""
    names = {id(m): n for n, m in model.named_modules()}
    events = []

    def hook(mod, inp, out):
        events.append((names[id(mod)], mod, inp[0], out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.ReLU))]
    try:
        with torch.no_grad():
            logits_from_p4(model, batch.p4, batch.mask, batch.scalars)
    finally:
        for h in handles:
            h.remove()
    return events


def _rescaling_candidates(events) -> list[tuple[str, str]]:
    """(incoming Linear, outgoing Linear) name pairs around each ReLU that acts on a Linear's output."""
    pairs = []
    for i, (_, mod, inp, _) in enumerate(events):
        if not isinstance(mod, nn.ReLU) or i == 0:
            continue
        prev_name, prev, _, prev_out = events[i - 1]
        if not isinstance(prev, nn.Linear) or inp is not prev_out:
            continue
        nxt = next(((n, m) for n, m, _, _ in events[i + 1:] if isinstance(m, nn.Linear)), None)
        if nxt is not None and nxt[1].in_features == prev.out_features:
            pairs.append((prev_name, nxt[0]))
    return list(dict.fromkeys(pairs))


def _is_rescaling_symmetry(model: nn.Module, batch, incoming: str, outgoing: str, seed: int) -> bool:
    modules = dict(model.named_modules())
    w_in, w_out = modules[incoming], modules[outgoing]
    rng = torch.Generator().manual_seed(seed)
    c = (torch.rand(w_in.out_features, generator=rng, dtype=torch.float64) + 0.5).to(w_in.weight)
    tangents = {f"{incoming}.weight": c[:, None] * w_in.weight.detach(),
                f"{outgoing}.weight": -w_out.weight.detach() * c[None, :]}
    if w_in.bias is not None:
        tangents[f"{incoming}.bias"] = c * w_in.bias.detach()
    features = compute_features(batch.p4, batch.mask, batch.scalars)

    def jvp(names):
        named = dict(model.named_parameters())
        primals = tuple(named[n].detach() for n in names)

        def f(*params):
            return torch.func.functional_call(model, dict(zip(names, params, strict=True)),
                                              (features, batch.p4, batch.mask))

        return torch.func.jvp(f, primals, tuple(tangents[n] for n in names))[1].detach()

    incoming_only = [n for n in tangents if n.startswith(f"{incoming}.")]
    scale = float(jvp(incoming_only).norm())
    return scale > 0 and float(jvp(list(tangents)).norm()) <= _rescaling_tolerance(w_in.weight.dtype) * scale


def structural_null_space(model: nn.Module, batches, *, seed: int = 0) -> StructuralNullSpace:
    """The structural counts of the module docstring on the evaluation set ``batches``."""
    was_training = model.training
    model.eval()
    first = next(model.parameters())
    batches = [move_batch(b, first.device, first.dtype) for b in batches]
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_jets = sum(int(b.p4.shape[0]) for b in batches)
    try:
        alive: dict[str, torch.Tensor] = {}
        relus: dict[str, tuple[nn.Linear | None, nn.Linear | None]] = {}
        events = []
        for batch in batches:
            events = _trace_modules(model, batch)
            for i, (name, mod, inp, out) in enumerate(events):
                if isinstance(mod, nn.ReLU):
                    active = (particle_rows(out, batch.mask) > 0).any(0)
                    alive[name] = alive[name] | active if name in alive else active
                    # a dead unit's incoming row is flat only when the ReLU reads that Linear's output itself
                    # (not through a LayerNorm, which couples the units)
                    direct = i and isinstance(events[i - 1][1], nn.Linear) and inp is events[i - 1][3]
                    prev = events[i - 1][1] if direct else None
                    nxt = next((m for _, m, _, _ in events[i + 1:] if isinstance(m, nn.Linear)), None)
                    relus[name] = (prev, nxt)
        dead = dead_dirs = 0
        for name, active in alive.items():
            n_dead = int((~active).sum())
            dead += n_dead
            prev, nxt = relus[name]
            fan_in = prev.in_features + (prev.bias is not None) if prev is not None else 0
            fan_out = nxt.out_features if nxt is not None and nxt.in_features == active.numel() else 0
            dead_dirs += n_dead * (fan_in + fan_out)
        rescaling = 0
        for k, (incoming, outgoing) in enumerate(_rescaling_candidates(events)):
            if _is_rescaling_symmetry(model, batches[-1], incoming, outgoing, seed + k):
                rescaling += dict(model.named_modules())[incoming].out_features
        n_units = sum(int(a.numel()) for a in alive.values())
    finally:
        model.train(was_training)
    n_outputs = int(getattr(model, "n_outputs", 1))
    return StructuralNullSpace(min(n_params, n_jets * n_outputs), dead, dead_dirs, rescaling, n_units)
