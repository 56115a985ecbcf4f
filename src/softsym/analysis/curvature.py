"""The Hessian of the task loss w.r.t. the parameters, as an operator on flat vectors (``HessianOperator``).

``HessianOperator`` follows the curvlinops / hessian-eigenthings style: an object with ``shape``, ``dtype``,
``matvec(v)`` on flat parameter vectors and a ``n_matvecs`` counter (the protocol of ``matvec.py``).

What is differentiated: L(θ) = Σ_b w_b ℓ_b(θ) / Σ_b w_b over a fixed evaluation set given as a list of
batches, where ℓ_b is the mean task loss of batch b (``task_loss(logits_from_p4(...))`` by default, the
penalty excluded) and w_b its number of jets: the jet-weighted mean, so the split into batches does not
change the matrix. The model is copied and put in eval mode; the caller's model is never touched.

How H·v is computed (measured on one CPU core, a 4.8k-parameter PFN, 512 jets × 64 particles; see
``benchmarks/bench_hessian.py``):

- ``hvp="double_backward"`` (default): the first-order graph ∇L(θ) is built once per batch with
  ``create_graph=True`` and kept; every product is one ``autograd.grad(∇L, θ, v, retain_graph=True)``
  through it. ~2× the cost of a gradient, no forward pass and no feature computation per product.
- ``hvp="fwd_rev"``: ``torch.func.jvp(grad(L))`` — forward-over-reverse, recomputes everything per
  product; ~1.7-2× slower than the cached double backward here. Kept as the reference and for checks.
- ``cache_graph=False`` rebuilds the graph per product (memory of one batch's graph instead of all
  of them, at ~1.5× the time). ``graph_bytes`` reports what the cached graphs hold.
- ``trim=True`` re-batches the evaluation set by jet multiplicity and cuts each batch to its longest jet
  (``trim_padding``): the same loss, ~30% fewer per-particle operations for typical multiplicities.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from softsym.analysis.matvec import parameter_layout
from softsym.data.jets import batch_length, move_batch, trim_padding
from softsym.models.base import logits_from_p4
from softsym.progress import progress_bar
from softsym.training.metrics import task_loss

LossFn = Callable[[nn.Module, Any], torch.Tensor]
HVP_METHODS = ("double_backward", "fwd_rev")


def jet_task_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean task loss of a ``JetBatch`` (BCE / cross-entropy on ``logits_from_p4``): what training minimises
    without its penalty."""
    return task_loss(logits_from_p4(model, batch.p4, batch.mask, batch.scalars), batch.labels)


@contextmanager
def _only_these_require_grad(model: nn.Module, params: Sequence[torch.Tensor]):
    ids = {id(p) for p in params}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in ids)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)``, so ``torch.func.functional_call`` can swap parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


class HessianOperator:
    """H = ∇²_θ L on flat vectors (see the module docstring for L and the products).

    ``batches``: the fixed evaluation set (e.g. a list of ``JetBatch``). ``loss_fn(model, batch)``: the mean
    loss of one batch (default ``jet_task_loss``). ``param_names``: restrict θ to these parameters
    (default: all that require grad); the flat layout is ``self.layout`` (``named_parameters`` order).
    ``dtype``: analyse a copy of the model in this dtype (e.g. ``torch.float64`` for tight accuracy).
    ``trim``: re-batch jets by multiplicity and cut the padding (``trim_padding``; exact, ~1.4× faster).
    """

    def __init__(self, model: nn.Module, batches: Iterable, *, loss_fn: LossFn = jet_task_loss,
                 param_names: Sequence[str] | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, hvp: str = "double_backward",
                 cache_graph: bool = True, trim: bool = True, progress: bool = False,
                 _share_from: HessianOperator | None = None):
        if hvp not in HVP_METHODS:
            raise ValueError(f"hvp={hvp!r} is unknown; expected one of {HVP_METHODS}")
        if _share_from is None:
            self.model = copy.deepcopy(model)
            self.model.eval()
            if device is None:
                first = next(self.model.parameters(), None)
                device = first.device if first is not None else torch.device("cpu")
            self.model.to(device=device)
            if dtype is not None:
                self.model.to(dtype=dtype)
            self.batches = [move_batch(b, torch.device(device), dtype) for b in batches]
            if trim:
                self.batches = [part for b in self.batches for part in trim_padding(b)]
        else:  # a restriction of another operator: same model copy, same data
            self.model = _share_from.model
            self.batches = _share_from.batches
        if not self.batches:
            raise ValueError("the evaluation set is empty: need at least one batch")
        self.loss_fn = loss_fn
        self.hvp = hvp
        self.cache_graph = cache_graph
        self.progress = progress
        self.layout = parameter_layout(self.model, param_names)
        if not self.layout:
            raise ValueError("no parameters to differentiate (none require grad or param_names is empty)")
        named = dict(self.model.named_parameters())
        self.params = [named[b.name] for b in self.layout]
        self.names = [b.name for b in self.layout]
        self.n = sum(b.numel for b in self.layout)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        sizes = torch.tensor([batch_length(b) for b in self.batches], dtype=torch.float64)
        self.weights = (sizes / sizes.sum()).tolist()
        self.n_matvecs = 0
        self.graph_bytes = 0
        self.loss = float("nan")
        self.gradient: torch.Tensor | None = None
        self._graphs: list[tuple[list[torch.Tensor], list[int]]] | None = None
        if hvp == "double_backward" and cache_graph:
            self._build_graphs()
        else:
            self._loss_and_gradient()

    # ------------------------------------------------------------------ construction
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def _first_order(self, batch, *, create_graph: bool, measure: bool = False):
        """(loss, list of gradients) of one batch; with ``measure`` also the bytes saved for backward."""
        seen: dict[int, int] = {}
        param_ptrs = {p.data_ptr() for p in self.model.parameters()}

        def pack(t: torch.Tensor):
            try:
                ptr = t.untyped_storage().data_ptr()
                if ptr not in param_ptrs:
                    seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
            except (RuntimeError, NotImplementedError):
                pass
            return t

        hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if measure else nullcontext()
        with torch.enable_grad(), _only_these_require_grad(self.model, self.params), hooks:
            loss = self.loss_fn(self.model, batch)
            grads = torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)
        return loss, grads, sum(seen.values())

    def _build_graphs(self) -> None:
        self._graphs = []
        total_loss, grad_sum, nbytes = 0.0, None, 0
        batches = progress_bar(self.batches, desc="hessian graphs", disable=not self.progress or len(self.batches) < 2,
                       leave=False)
        for w, batch in zip(self.weights, batches, strict=False):
            loss, grads, saved = self._first_order(batch, create_graph=True, measure=True)
            nbytes += saved
            keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            self._graphs.append(([grads[i] for i in keep], keep))
            total_loss += w * float(loss.detach())
            flat = self._flatten([None if g is None else g.detach() for g in grads])
            grad_sum = w * flat if grad_sum is None else grad_sum + w * flat
        self.graph_bytes = nbytes
        self.loss, self.gradient = total_loss, grad_sum

    def _loss_and_gradient(self) -> None:
        total_loss, grad_sum = 0.0, None
        for w, batch in zip(self.weights, self.batches, strict=True):
            loss, grads, _ = self._first_order(batch, create_graph=False)
            flat = self._flatten([None if g is None else g.detach() for g in grads])
            total_loss += w * float(loss.detach())
            grad_sum = w * flat if grad_sum is None else grad_sum + w * flat
        self.loss, self.gradient = total_loss, grad_sum

    # ------------------------------------------------------------------ flat <-> list
    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [v[b.slice].view(b.shape) for b in self.layout]

    def _flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        return torch.cat([torch.zeros(b.numel, dtype=self.dtype, device=self.device) if t is None
                          else t.reshape(-1) for b, t in zip(self.layout, tensors, strict=True)])

    # ------------------------------------------------------------------ products
    def matvec(self, v) -> torch.Tensor:
        """H·v for a flat vector ``v`` (tensor or array of length n); returns a tensor in ``self.dtype``."""
        v = torch.as_tensor(v).to(device=self.device, dtype=self.dtype).reshape(-1)
        if v.numel() != self.n:
            raise ValueError(f"expected a vector of length {self.n}, got {v.numel()}")
        self.n_matvecs += 1
        if self.hvp == "fwd_rev":
            return self._hvp_fwd_rev(v)
        return self._hvp_double_backward(v)

    def matmat(self, V, *, columns_per_call: int = 1) -> torch.Tensor:
        """H·V for ``V [n, k]``; ``columns_per_call > 1`` uses batched double-backward products."""
        V = torch.as_tensor(V).to(device=self.device, dtype=self.dtype)
        if V.dim() == 1:
            return self.matvec(V)
        if columns_per_call <= 1 or self.hvp != "double_backward" or self._graphs is None:
            return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
        out = []
        for start in range(0, V.shape[1], columns_per_call):
            out.append(self._hvp_batched(V[:, start:start + columns_per_call]))
        return torch.cat(out, dim=1)

    def __matmul__(self, other):
        other_t = torch.as_tensor(other)
        return self.matvec(other_t) if other_t.dim() == 1 else self.matmat(other_t)

    def _accumulate(self, total: list[torch.Tensor | None], w: float, parts) -> None:
        for i, h in enumerate(parts):
            if h is not None:
                total[i] = w * h if total[i] is None else total[i].add_(h, alpha=w)

    def _hvp_double_backward(self, v: torch.Tensor) -> torch.Tensor:
        vs = self._split(v)
        total: list[torch.Tensor | None] = [None] * len(self.params)
        if self._graphs is not None:
            for w, (outs, keep) in zip(self.weights, self._graphs, strict=True):
                if not outs:
                    continue
                hv = torch.autograd.grad(outs, self.params, grad_outputs=[vs[i] for i in keep],
                                         retain_graph=True, allow_unused=True)
                self._accumulate(total, w, hv)
        else:
            for w, batch in zip(self.weights, self.batches, strict=True):
                _, grads, _ = self._first_order(batch, create_graph=True)
                keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
                if keep:
                    with _only_these_require_grad(self.model, self.params):
                        hv = torch.autograd.grad([grads[i] for i in keep], self.params,
                                                 grad_outputs=[vs[i] for i in keep], allow_unused=True)
                    self._accumulate(total, w, hv)
        return self._flatten(total)

    def _hvp_batched(self, V: torch.Tensor) -> torch.Tensor:
        k = V.shape[1]
        Vs = [V[b.slice].T.reshape(k, *b.shape) for b in self.layout]
        total: list[torch.Tensor | None] = [None] * len(self.params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for w, (outs, keep) in zip(self.weights, self._graphs, strict=True):
                if not outs:
                    continue
                hv = torch.autograd.grad(outs, self.params, grad_outputs=[Vs[i] for i in keep],
                                         retain_graph=True, allow_unused=True, is_grads_batched=True)
                self._accumulate(total, w, hv)
        self.n_matvecs += k
        cols = [torch.zeros(k, b.numel, dtype=self.dtype, device=self.device) if t is None else t.reshape(k, -1)
                for b, t in zip(self.layout, total, strict=True)]
        return torch.cat(cols, dim=1).T

    def _hvp_fwd_rev(self, v: torch.Tensor) -> torch.Tensor:
        wrapper = _LossModule(self.model, self.loss_fn)
        primals = {f"model.{n}": p.detach() for n, p in zip(self.names, self.params, strict=True)}
        tangents = {f"model.{n}": t for n, t in zip(self.names, self._split(v), strict=True)}
        total: list[torch.Tensor | None] = [None] * len(self.params)
        with _only_these_require_grad(self.model, []):
            for w, batch in zip(self.weights, self.batches, strict=True):
                def grad_fn(pd, batch=batch):
                    return torch.func.grad(lambda q: torch.func.functional_call(wrapper, q, (batch,)))(pd)

                _, hv = torch.func.jvp(grad_fn, (primals,), (tangents,))
                self._accumulate(total, w, [hv[f"model.{n}"] for n in self.names])
        return self._flatten(total)

    # ------------------------------------------------------------------ helpers
    def restricted(self, names: Sequence[str]) -> HessianOperator:
        """The block H[S, S] for the parameters ``names`` (the others held fixed): an operator on the same
        model copy and data whose graph only reaches what depends on those parameters."""
        return HessianOperator(self.model, [], loss_fn=self.loss_fn, param_names=list(names), hvp=self.hvp,
                               cache_graph=self.cache_graph, progress=False, _share_from=self)

    def parameter_order(self) -> list[str]:
        """Parameter names from the input side to the output side: by decreasing distance from the loss
        in the autograd graph of the first batch (ties: ``named_parameters`` order)."""
        with torch.enable_grad(), _only_these_require_grad(self.model, self.params):
            loss = self.loss_fn(self.model, self.batches[0])
        by_id = {id(p): n for n, p in zip(self.names, self.params, strict=True)}
        depth: dict[str, int] = {}
        frontier, seen, level = [loss.grad_fn], set(), 0
        while frontier:
            nxt = []
            for node in frontier:
                if node is None or node in seen:
                    continue
                seen.add(node)
                var = getattr(node, "variable", None)
                if var is not None and id(var) in by_id:
                    depth.setdefault(by_id[id(var)], level)
                nxt.extend(fn for fn, _ in node.next_functions if fn is not None)
            frontier, level = nxt, level + 1
        position = {n: i for i, n in enumerate(self.names)}
        return sorted(self.names, key=lambda n: (-depth.get(n, -1), position[n]))

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 in and out) for scipy's solvers."""
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            return self.matvec(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))) \
                .detach().cpu().double().numpy()

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=np.float64)
