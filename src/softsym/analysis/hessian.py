"""The Hessian of the task loss w.r.t. the parameters, as an operator on flat vectors, and its exact form.

``HessianOperator`` follows the curvlinops / hessian-eigenthings style: an object with ``shape``, ``dtype``,
``matvec(v)`` on flat parameter vectors and a ``n_matvecs`` counter; the algorithms (``exact_hessian`` here,
``lanczos``, the trace estimators, SLQ) are free functions taking it.

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
- Batching columns (``is_grads_batched`` / ``vmap`` over basis blocks) was measured *slower* per column
  on CPU with torch 2.13 (legacy-vmap fallbacks and copies: 1.2-4× per column), so ``exact_hessian`` uses
  ``columns_per_call=1`` on CPU and batches only on CUDA, where it pays.

``exact_hessian`` gets the full matrix from far fewer full products than one per column: parameters are
ordered from the input side to the output side (by their distance from the loss in the autograd graph);
for block l, the columns H[l:, l] come from products on a graph in which only the parameters of blocks
l, l+1, … require grad — that graph does not reach the earlier layers, so its products are cheaper (on
the PFN above the head's products cost ~1% of a full one) — and H[:l, l] = H[l, :l]ᵀ by symmetry.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from softsym.models.base import logits_from_p4
from softsym.training.metrics import task_loss

LossFn = Callable[[nn.Module, Any], torch.Tensor]
HVP_METHODS = ("double_backward", "fwd_rev")


def jet_task_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean task loss of a ``JetBatch`` (BCE / cross-entropy on ``logits_from_p4``): what training minimises
    without its penalty."""
    return task_loss(logits_from_p4(model, batch.p4, batch.mask, batch.scalars), batch.labels)


def trim_padding(batch, *, max_buckets: int = 8, min_jets: int = 32) -> list:
    """Split a batch of jets into up to ``max_buckets`` batches of similar multiplicity, each cut to its
    largest number of real particles. Exact for every model of the contract (padded particles never change
    the output): the jet-weighted loss is the same function of θ, with ~30% fewer per-particle operations on
    typical jets. Applies to dataclass batches with ``mask [B, P]`` whose real particles come first; any other
    batch is returned unchanged (as a one-element list)."""
    mask = getattr(batch, "mask", None)
    if not (is_dataclass(batch) and isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.dtype == torch.bool):
        return [batch]
    n_jets, n_slots = mask.shape
    counts = mask.sum(1)
    if not torch.equal(mask, torch.arange(n_slots, device=mask.device)[None, :] < counts[:, None]):
        return [batch]  # real particles are not first: leave it alone
    k = max(1, min(max_buckets, n_jets // max(min_jets, 1)))
    order = torch.argsort(counts, stable=True)
    out = []
    for idx in torch.tensor_split(order, k):
        if len(idx) == 0:
            continue
        keep = max(int(counts[idx].max()), 1)
        values = {}
        for f in fields(batch):
            v = getattr(batch, f.name)
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n_jets:
                v = v[idx]
                if v.dim() >= 2 and v.shape[1] == n_slots:
                    v = v[:, :keep]
            values[f.name] = v
        out.append(type(batch)(**values))
    return out


def batch_length(batch) -> int:
    """Number of examples in a batch: ``len(batch)`` if defined, else the leading size of its first tensor."""
    if hasattr(batch, "__len__") and not isinstance(batch, (tuple, list, dict)):
        return len(batch)
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, dict) else batch
    for item in items:
        if isinstance(item, torch.Tensor):
            return int(item.shape[0])
    raise TypeError(f"cannot tell the size of a batch of type {type(batch).__name__}")


def move_batch(batch, device: torch.device | None = None, dtype: torch.dtype | None = None):
    """Move every tensor of ``batch`` to ``device`` and floating tensors to ``dtype`` (dataclasses such as
    ``JetBatch``, tuples, lists, dicts and plain tensors)."""
    if isinstance(batch, torch.Tensor):
        out = batch.to(device) if device is not None else batch
        if dtype is not None and out.is_floating_point():
            out = out.to(dtype)
        return out
    if is_dataclass(batch) and not isinstance(batch, type):
        return type(batch)(**{f.name: move_batch(getattr(batch, f.name), device, dtype) for f in fields(batch)})
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_batch(b, device, dtype) for b in batch)
    if isinstance(batch, dict):
        return {k: move_batch(v, device, dtype) for k, v in batch.items()}
    return batch


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


def flatten_parameters(model: nn.Module, layout: Sequence[ParamBlock]) -> torch.Tensor:
    named = dict(model.named_parameters())
    return torch.cat([named[b.name].detach().reshape(-1) for b in layout])


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

        hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if measure else _nullcontext()
        with torch.enable_grad(), _only_these_require_grad(self.model, self.params), hooks:
            loss = self.loss_fn(self.model, batch)
            grads = torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)
        return loss, grads, sum(seen.values())

    def _build_graphs(self) -> None:
        self._graphs = []
        total_loss, grad_sum, nbytes = 0.0, None, 0
        batches = tqdm(self.batches, desc="hessian graphs", disable=not self.progress or len(self.batches) < 2,
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

    def parameters_flat(self) -> torch.Tensor:
        return flatten_parameters(self.model, self.layout)

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


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def as_matvec(op) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, torch.device]:
    """(float64 flat matvec, n, device) for a HessianOperator, a dense matrix (tensor or array), a scipy
    LinearOperator or any object with ``matvec`` and ``shape``."""
    if isinstance(op, HessianOperator):
        return (lambda v: op.matvec(v).to(torch.float64)), op.n, op.device
    if isinstance(op, np.ndarray):
        op = torch.from_numpy(op)
    if isinstance(op, torch.Tensor):
        mat = op.to(torch.float64)
        return (lambda v: mat @ v.to(mat.device)), int(mat.shape[0]), mat.device
    if hasattr(op, "matvec") and hasattr(op, "shape"):
        def mv(v: torch.Tensor) -> torch.Tensor:
            out = op.matvec(v.detach().cpu().numpy() if not isinstance(op, HessianOperator) else v)
            return torch.as_tensor(np.asarray(out), dtype=torch.float64).reshape(-1)
        return mv, int(op.shape[0]), torch.device("cpu")
    raise TypeError(f"cannot use an object of type {type(op).__name__} as a linear operator")


def matvec_count(op) -> int:
    return int(getattr(op, "n_matvecs", 0))


# ---------------------------------------------------------------------------------------------- exact
@dataclass(frozen=True)
class ExactHessian:
    """The full Hessian (float64, symmetric) and its eigendecomposition (eigenvalues ascending)."""

    matrix: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    n_matvecs: int              # Hessian-vector products (columns), whatever graph they ran on
    full_matvec_equivalents: float  # the time spent, in units of one full-graph product (block 0's rate)
    seconds: float              # building the matrix
    seconds_eigh: float
    asymmetry: float            # max |H_ll − H_llᵀ| / max |H| over the diagonal blocks computed both ways
    layout: tuple[ParamBlock, ...] = ()
    blocks: tuple[tuple[str, int, int, float], ...] = ()  # (parameter, columns, rows, seconds) per block


def exact_hessian(op, *, eigenvectors: bool = True, columns_per_call: int | str = "auto",
                  triangular: bool = True, progress: bool = False) -> ExactHessian:
    """The full Hessian, column by column, and ``numpy.linalg.eigh`` of it.

    For a ``HessianOperator`` with the cached double-backward product and ``triangular=True`` (default),
    block l's columns are taken on a graph restricted to the parameters of blocks ≥ l (input side first,
    ``parameter_order``) and the rest filled in by symmetry (see the module docstring); otherwise one
    product per column of the full operator. ``columns_per_call``: basis vectors per batched product
    (``"auto"``: 1 on CPU, where batching was measured slower, 32 on CUDA).
    """
    t0 = time.perf_counter()
    if isinstance(op, HessianOperator):
        n = op.n
        if columns_per_call == "auto":
            columns_per_call = 32 if op.device.type == "cuda" else 1
        if triangular and op.hvp == "double_backward" and op.cache_graph and len(op.layout) > 1:
            C, matvecs, equiv, asym, blocks = _block_triangular(op, int(columns_per_call), progress)
        else:
            C, matvecs = _all_columns(op, int(columns_per_call), progress)
            equiv, asym, blocks = float(matvecs), None, ()
    else:
        mv, n, device = as_matvec(op)
        C = np.empty((n, n))
        for j in tqdm(range(n), desc="hessian columns", disable=not progress, leave=False):
            e = torch.zeros(n, dtype=torch.float64, device=device)
            e[j] = 1.0
            C[:, j] = mv(e).cpu().numpy()
        matvecs, equiv, asym, blocks = n, float(n), None, ()
    if asym is None:
        scale = max(float(np.abs(C).max()), 1e-300)
        asym = float(np.abs(C - C.T).max() / scale)
        H = 0.5 * (C + C.T)
    else:
        H = C
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    if eigenvectors:
        evals, evecs = np.linalg.eigh(H)
    else:
        evals, evecs = np.linalg.eigvalsh(H), None
    layout = tuple(op.layout) if isinstance(op, HessianOperator) else ()
    return ExactHessian(H, evals, evecs, matvecs, equiv, seconds, time.perf_counter() - t1, asym, layout, blocks)


def _columns(op: HessianOperator, indices: Sequence[int], per_call: int, bar) -> np.ndarray:
    """H[:, indices] of ``op`` (float64 numpy ``[op.n, len(indices)]``)."""
    out = np.empty((op.n, len(indices)))
    for start in range(0, len(indices), per_call):
        idx = indices[start:start + per_call]
        E = torch.zeros(op.n, len(idx), dtype=op.dtype, device=op.device)
        E[list(idx), list(range(len(idx)))] = 1.0
        cols = op.matvec(E[:, 0]).unsqueeze(1) if len(idx) == 1 else op.matmat(E, columns_per_call=per_call)
        out[:, start:start + len(idx)] = cols.detach().cpu().double().numpy()
        bar.update(len(idx))
    return out


def _all_columns(op: HessianOperator, per_call: int, progress: bool) -> tuple[np.ndarray, int]:
    before = op.n_matvecs
    with tqdm(total=op.n, desc="hessian columns", disable=not progress, leave=False) as bar:
        C = _columns(op, list(range(op.n)), per_call, bar)
    return C, op.n_matvecs - before


def _block_triangular(op: HessianOperator, per_call: int, progress: bool):
    order = op.parameter_order()
    block_of = {b.name: b for b in op.layout}
    n = op.n
    C = np.zeros((n, n))
    matvecs, asym, per_column_full = 0, 0.0, None
    stats = []
    with tqdm(total=n, desc="hessian columns", disable=not progress, leave=False) as bar:
        for l, name in enumerate(order):
            sub = op if l == 0 else op.restricted(order[l:])
            # global flat indices of the sub-operator's layout (named_parameters order restricted)
            rows = np.concatenate([np.arange(block_of[b.name].offset, block_of[b.name].offset + b.numel)
                                   for b in sub.layout])
            sub_block = next(b for b in sub.layout if b.name == name)
            local = list(range(sub_block.offset, sub_block.offset + sub_block.numel))
            before, t_block = sub.n_matvecs, time.perf_counter()
            cols = _columns(sub, local, per_call, bar)
            t_block = time.perf_counter() - t_block
            matvecs += sub.n_matvecs - before
            if per_column_full is None:
                per_column_full = t_block / len(local)
            stats.append((name, len(local), len(rows), t_block))
            g = block_of[name].slice
            C[rows, g] = cols
            diag = C[g, g]
            asym = max(asym, float(np.abs(diag - diag.T).max()))
            C[g, g] = 0.5 * (diag + diag.T)
            # fill the transposed entries (rows of block `name`, columns of the later blocks)
            later = np.setdiff1d(rows, np.arange(g.start, g.stop))
            C[np.ix_(np.arange(g.start, g.stop), later)] = C[np.ix_(later, np.arange(g.start, g.stop))].T
            if sub is not op:
                del sub
    scale = max(float(np.abs(C).max()), 1e-300)
    equiv = sum(s[3] for s in stats) / max(per_column_full, 1e-300)
    return C, matvecs, equiv, asym / scale, tuple(stats)
