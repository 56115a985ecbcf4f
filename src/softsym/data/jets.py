"""The in-memory jet container every stage works on.

``JetArrays`` holds padded numpy arrays (the data contract of docs/architecture.md): 4-vectors ``p4 [N, P, 4]``
(E, px, py, pz, float32), ``mask [N, P]`` (bool, real particles first, sorted by pT), integer class
indices ``labels [N]`` and symmetry-neutral per-particle ``scalars [N, P, S]`` (charge, PID flags).
``observers`` holds per-jet values read from the files only to be written beside the predictions (``jet_pt``,
``jet_sdmass``, ``data.observers``); models never see them.
Model features are computed from ``p4`` (``softsym.physics.compute_features``) when a batch is made,
so that a transformed jet always yields consistent features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class JetArrays:
    p4: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    scalars: np.ndarray
    class_names: tuple[str, ...]
    scalar_names: tuple[str, ...] = ()
    observers: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> [N] per-jet values

    def __post_init__(self) -> None:
        n, p = self.mask.shape
        for name, values in self.observers.items():
            if np.shape(values) != (n,):
                raise ValueError(f"observer {name} has shape {np.shape(values)}, expected {(n,)}")
        if self.p4.shape != (n, p, 4):
            raise ValueError(f"p4 has shape {self.p4.shape}, expected {(n, p, 4)} to match mask {self.mask.shape}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels has shape {self.labels.shape}, expected {(n,)}")
        if self.scalars.shape[:2] != (n, p) or self.scalars.shape[2] != len(self.scalar_names):
            raise ValueError(f"scalars has shape {self.scalars.shape}, expected {(n, p, len(self.scalar_names))}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def max_particles(self) -> int:
        return int(self.mask.shape[1])

    def subset(self, index: np.ndarray) -> JetArrays:
        return JetArrays(self.p4[index], self.mask[index], self.labels[index], self.scalars[index],
                         self.class_names, self.scalar_names, {k: v[index] for k, v in self.observers.items()})

    def to_batch(self, device: torch.device | str = "cpu") -> JetBatch:
        return JetBatch(
            p4=torch.as_tensor(self.p4, device=device),
            mask=torch.as_tensor(self.mask, device=device),
            labels=torch.as_tensor(self.labels, device=device),
            scalars=torch.as_tensor(self.scalars, device=device),
        )

    @staticmethod
    def concatenate(parts: list[JetArrays]) -> JetArrays:
        if not parts:
            raise ValueError("cannot concatenate an empty list of JetArrays")
        first = parts[0]
        shared = [k for k in first.observers if all(k in p.observers for p in parts)]
        return JetArrays(
            np.concatenate([p.p4 for p in parts]), np.concatenate([p.mask for p in parts]),
            np.concatenate([p.labels for p in parts]), np.concatenate([p.scalars for p in parts]),
            first.class_names, first.scalar_names, {k: np.concatenate([p.observers[k] for p in parts]) for k in shared},
        )


@dataclass(frozen=True)
class JetBatch:
    """A batch of jets as torch tensors, as handed to models, penalties and analyses."""

    p4: torch.Tensor       # [B, P, 4] float32 (E, px, py, pz)
    mask: torch.Tensor     # [B, P] bool
    labels: torch.Tensor   # [B] int64 class index
    scalars: torch.Tensor  # [B, P, S] float32

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> JetBatch:
        return JetBatch(self.p4.to(device), self.mask.to(device), self.labels.to(device), self.scalars.to(device))

    def with_p4(self, p4: torch.Tensor) -> JetBatch:
        return JetBatch(p4, self.mask, self.labels, self.scalars)


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


def particle_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rows of the real particles of a per-particle tensor ``[B, P, D]`` (``mask [B, P]``), ``[n, D]``;
    a tensor that is not per particle is flattened to its last dimension."""
    if values.dim() >= 3 and tuple(values.shape[:2]) == tuple(mask.shape):
        return values[mask]
    return values.reshape(-1, values.shape[-1])
