"""The in-memory jet container every stage works on.

``JetArrays`` holds padded numpy arrays (the data contract of DESIGN.md): 4-vectors ``p4 [N, P, 4]``
(E, px, py, pz, float32), ``mask [N, P]`` (bool, real particles first, sorted by pT), integer class
indices ``labels [N]`` and symmetry-neutral per-particle ``scalars [N, P, S]`` (charge, PID flags).
Model features are computed from ``p4`` (``softsym.physics.compute_features``) when a batch is made,
so that a transformed jet always yields consistent features.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        n, p = self.mask.shape
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
                         self.class_names, self.scalar_names)

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
        return JetArrays(
            np.concatenate([p.p4 for p in parts]), np.concatenate([p.mask for p in parts]),
            np.concatenate([p.labels for p in parts]), np.concatenate([p.scalars for p in parts]),
            first.class_names, first.scalar_names,
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
