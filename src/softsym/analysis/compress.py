"""Compressibility: how far a trained tagger can be pruned or quantised before its AUC drops.

- Global magnitude pruning: the fraction ``s`` of all weight-matrix entries (parameters with ≥ 2 dims;
  biases and norms are kept) with the smallest |w| are set to zero, one threshold across layers; no
  retraining unless a ``finetune(model, masks)`` hook is given (it should keep pruned weights at zero,
  e.g. by calling ``apply_masks`` after every optimiser step).
- Post-training quantisation: weight matrices rounded to a symmetric uniform grid of 2^b − 1 levels,
  per tensor (one scale) or per output channel (a scale per row); biases stay float32.
- Size in bits: dense float32 = 32·n. Pruned: 32 bits per kept weight + a 1-bit mask per weight-matrix
  entry, or dense if smaller. Quantised: b bits per weight entry + 32 bits per scale. Pruned and quantised
  (``combine``): b bits per kept weight + the mask + scales. Other parameters: 32 bits each.
- ``compressed_bits``: the smallest size among the original and every evaluated configuration whose AUC
  is at least (1 − tolerance) × the original AUC (tolerance 0.01: "within 1%"), both AUCs on the *selection*
  set (the validation split in the complexity stage; by default the evaluation set itself). The AUCs of
  every configuration on the evaluation set (the test split) are reported, and ``compressed_auc`` is the
  test AUC at the chosen configuration: selection never looks at the jets it is reported on.
- ReLU rescaling: with ``balance=True`` (default) the model is first mapped to the balanced point of its
  ReLU-rescaling orbit (``rescaling.balance_relu_units``: every rescalable hidden unit's incoming and outgoing
  norms equalised — the same function), and the global magnitude ranking, the masks and the quantisation
  grids are those of the balanced weights. So a copy whose units were rescaled (incoming × c_i, outgoing
  × 1/c_i) prunes and quantises to the same models and gets the same ``compressed_bits``.
The caller's model is never modified: every configuration is applied to a deep copy.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from softsym.analysis.rescaling import balance_relu_units
from softsym.data.jets import trim_padding
from softsym.physics import compute_features
from softsym.progress import progress_bar
from softsym.training.metrics import probabilities
from softsym.training.predict import predict

FineTune = Callable[[nn.Module, dict[str, torch.Tensor]], None]


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    y = labels != 0
    if y.all() or not y.any():
        raise ValueError("AUC needs both signal and background jets in the evaluation set")
    return float(roc_auc_score(y, 1 - probs[:, 0]))


def evaluate_auc(model: nn.Module, batches: Iterable) -> float:
    """AUC of signal vs background (class 0 = background; several classes: 'any signal', 1 − p_0)."""
    labels, probs = predict(model, batches)
    return _auc(labels, probs)


class _Prepared:
    """An evaluation set prepared once for many models: each batch cut to its jets' multiplicity
    (``trim_padding``: padded particles never change a model's output) with its features computed, so every
    configuration costs one forward pass per batch and nothing else. Same AUC as ``evaluate_auc``."""

    def __init__(self, batches: Iterable) -> None:
        self.parts, labels = [], []
        for batch in batches:
            for part in trim_padding(batch):
                self.parts.append((compute_features(part.p4, part.mask, part.scalars), part.p4, part.mask))
                labels.append(part.labels.cpu().numpy())
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)

    @torch.no_grad()
    def auc(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        try:
            logits = torch.cat([model(f, p4, mask).cpu() for f, p4, mask in self.parts])
        finally:
            model.train(was_training)
        return _auc(self.labels, probabilities(logits).numpy())


def weight_names(model: nn.Module) -> list[str]:
    """Parameters that are pruned / quantised: those with at least 2 dimensions (weight matrices)."""
    return [n for n, p in model.named_parameters() if p.dim() >= 2]


def magnitude_prune(model: nn.Module, sparsity: float) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(pruned copy, keep-masks by parameter name): exactly round(s·N) smallest-|w| weight entries zeroed."""
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    pruned = copy.deepcopy(model)
    named = dict(pruned.named_parameters())
    names = weight_names(pruned)
    flat = torch.cat([named[n].detach().abs().reshape(-1) for n in names])
    n_prune = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_prune > 0:
        keep[torch.topk(flat, n_prune, largest=False).indices] = False
    masks, offset = {}, 0
    for n in names:
        numel = named[n].numel()
        masks[n] = keep[offset:offset + numel].view_as(named[n])
        offset += numel
    apply_masks(pruned, masks)
    return pruned, masks


def masked_finetune(train_loader, val_loader, *, epochs: int = 1, lr: float = 1e-4, seed: int = 0,
                    progress: bool = False) -> FineTune:
    """A ``finetune`` hook: ``epochs`` of the task loss with ``training.fit`` (AdamW), the pruning masks
    re-applied after every step, so the fine-tuned copy keeps its sparsity."""
    from softsym.training.loop import FitConfig, fit
    from softsym.training.objective import penalised_objective

    def run(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        cfg = FitConfig(epochs=epochs, lr=lr, weight_decay=0.0, patience=epochs + 1, seed=seed, progress=progress)
        fit(model, train_loader, val_loader, penalised_objective(None), cfg,
            on_step=lambda step, m: apply_masks(m, masks))
        apply_masks(model, masks)

    return run


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned entries (call after each fine-tuning step to keep them pruned)."""
    named = dict(model.named_parameters())
    for n, m in masks.items():
        named[n].mul_(m.to(named[n].dtype))


@torch.no_grad()
def quantize_weights(model: nn.Module, bits: int, *, per_channel: bool = False) -> nn.Module:
    """Copy of ``model`` with weight matrices on a symmetric uniform ``bits``-bit grid (zeros stay zero)."""
    if bits < 2:
        raise ValueError(f"need at least 2 bits, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = copy.deepcopy(model)
    named = dict(out.named_parameters())
    for n in weight_names(out):
        w = named[n]
        if per_channel:
            amax = w.abs().reshape(w.shape[0], -1).amax(1).view(-1, *([1] * (w.dim() - 1)))
        else:
            amax = w.abs().amax()
        scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
        w.copy_(torch.clamp(torch.round(w / scale), -qmax, qmax) * scale)
    return out


def model_bits(model: nn.Module, *, sparsity: float = 0.0, bits: int | None = None,
               per_channel: bool = False) -> int:
    """Storage size in bits under the conventions of the module docstring."""
    named = dict(model.named_parameters())
    wn = set(weight_names(model))
    n_w = sum(named[n].numel() for n in wn)
    n_other = sum(p.numel() for n, p in named.items() if n not in wn)
    value_bits = 32 if bits is None else bits
    scales = 0 if bits is None else sum(named[n].shape[0] if per_channel else 1 for n in wn)
    kept = n_w - int(round(sparsity * n_w))
    dense = n_w * value_bits
    sparse = kept * value_bits + n_w
    return int(min(dense, sparse) + 32 * scales + 32 * n_other)


@dataclass(frozen=True)
class CompressionResult:
    auc: float
    prune_auc: dict[float, float]
    quant_auc: dict[int, float]
    combined_auc: dict[tuple[float, int], float]
    sizes: dict[str, int]             # configuration label -> bits
    aucs: dict[str, float]            # configuration label -> AUC
    original_bits: int
    compressed_bits: int
    compressed_config: str
    tolerance: float
    per_channel: bool = False
    extra: dict[str, float] = field(default_factory=dict)
    select_aucs: dict[str, float] = field(default_factory=dict)  # label -> AUC on the selection set
    balanced_units: int = 0

    def metrics(self) -> dict[str, float]:
        out = {"compress_auc_original": self.auc, "compressed_bits": float(self.compressed_bits),
               "compression_ratio": self.original_bits / max(self.compressed_bits, 1),
               "compressed_auc": self.aucs[self.compressed_config],
               "compressed_auc_select": self.select_aucs.get(self.compressed_config, self.aucs[self.compressed_config]),
               "compress_balanced_units": float(self.balanced_units)}
        out.update({f"prune_auc_at_{s:g}": v for s, v in self.prune_auc.items()})
        out.update({f"quant_auc_{b}bit": v for b, v in self.quant_auc.items()})
        return out


def compressibility(model: nn.Module, batches: Iterable, *,
                    sparsities: Sequence[float] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95),
                    bits: Sequence[int] = (8, 6, 4), per_channel: bool = False, tolerance: float = 0.01,
                    combine: bool = True, finetune: FineTune | None = None, select_batches: Iterable | None = None,
                    balance: bool = True, progress: bool = False) -> CompressionResult:
    """AUC after pruning at each sparsity, after quantisation at each bit width (and both, with ``combine``),
    and ``compressed_bits``. ``batches`` is the evaluation set (e.g. the test jets) on which the AUCs are
    reported; ``select_batches`` the set on which ``compressed_bits`` is chosen (e.g. the validation jets;
    None: ``batches``). ``balance``: prune and quantise the ReLU-balanced model (module docstring)."""
    batches = list(batches)
    report = _Prepared(batches)
    select = report if select_batches is None else _Prepared(list(select_batches))
    balanced_units = 0
    if balance:
        balanced = balance_relu_units(model, batches[0])
        model, balanced_units = balanced.model, balanced.n_units
    auc0 = report.auc(model)
    select_aucs = {"original": auc0 if select is report else select.auc(model)}
    original = model_bits(model)
    sizes, aucs = {"original": original}, {"original": auc0}
    prune_auc, quant_auc, combined = {}, {}, {}
    configs = [(float(s), None) for s in sparsities] + [(0.0, int(b)) for b in bits]
    if combine:
        configs += [(float(s), int(b)) for s, b in itertools.product(sparsities, bits) if s > 0]
    for s, b in progress_bar(configs, desc="compress", disable=not progress, leave=False):
        candidate, masks = magnitude_prune(model, s) if s > 0 else (copy.deepcopy(model), {})
        if s > 0 and finetune is not None:
            finetune(candidate, masks)
            apply_masks(candidate, masks)
        if b is not None:
            candidate = quantize_weights(candidate, b, per_channel=per_channel)
        auc = report.auc(candidate)
        label = f"prune{s:g}" if b is None else (f"quant{b}bit" if s == 0 else f"prune{s:g}+quant{b}bit")
        sizes[label] = model_bits(model, sparsity=s, bits=b, per_channel=per_channel)
        aucs[label] = auc
        select_aucs[label] = auc if select is report else select.auc(candidate)
        if b is None:
            prune_auc[s] = auc
        elif s == 0:
            quant_auc[b] = auc
        else:
            combined[(s, b)] = auc
    ok = [label for label in sizes if select_aucs[label] >= (1 - tolerance) * select_aucs["original"]]
    best = min(ok, key=lambda label: sizes[label])
    return CompressionResult(auc0, prune_auc, quant_auc, combined, sizes, aucs, original, sizes[best], best,
                             tolerance, per_channel, select_aucs=select_aucs, balanced_units=balanced_units)
