"""The full Hessian as a matrix (``exact_hessian``) and its eigendecomposition (``ExactHessian``).

``exact_hessian`` gets the full matrix from far fewer full products than one per column: parameters are
ordered from the input side to the output side (by their distance from the loss in the autograd graph);
for block l, the columns H[l:, l] come from products on a graph in which only the parameters of blocks
l, l+1, … require grad — that graph does not reach the earlier layers, so its products are cheaper (on
a 4.8k-parameter PFN the head's products cost ~1% of a full one) — and H[:l, l] = H[l, :l]ᵀ by symmetry.

Batching columns (``is_grads_batched`` / ``vmap`` over basis blocks) was measured *slower* per column on CPU
with torch 2.13 (legacy-vmap fallbacks and copies: 1.2-4× per column), so ``exact_hessian`` uses
``columns_per_call=1`` on CPU and batches only on CUDA, where it pays.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from softsym.analysis.curvature import HessianOperator
from softsym.analysis.matvec import ParamBlock, as_matvec
from softsym.progress import progress_bar


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
        for j in progress_bar(range(n), desc="hessian columns", disable=not progress, leave=False):
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
    with progress_bar(total=op.n, desc="hessian columns", disable=not progress, leave=False) as bar:
        C = _columns(op, list(range(op.n)), per_call, bar)
    return C, op.n_matvecs - before


def _block_triangular(op: HessianOperator, per_call: int, progress: bool):
    order = op.parameter_order()
    block_of = {b.name: b for b in op.layout}
    n = op.n
    C = np.zeros((n, n))
    matvecs, asym, per_column_full = 0, 0.0, None
    stats = []
    with progress_bar(total=n, desc="hessian columns", disable=not progress, leave=False) as bar:
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
