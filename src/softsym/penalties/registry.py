"""``PENALTIES``: a config name → the training penalty it builds, ``PENALTIES.build(name, weight=..., **options)``
with the options of config group ``penalty`` (its keys other than ``name`` and ``lambda``).

A penalty is a callable ``penalty(model, batch, rng=None) -> (logits, value)`` with a ``weight``; training
minimises task loss + weight · value. ``none`` builds ``None`` (the plain task loss). The other entries
register themselves in the module that defines them (``geometric.py``: ``gc``; ``symmetry.py``: one per
symmetry of ``softsym.physics.symmetries.SYMMETRIES``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.registry import Registry


class Penalty(Protocol):
    weight: float

    def __call__(self, model: nn.Module, batch: JetBatch,
                 rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...


PENALTIES: Registry[Penalty | None] = Registry("penalty")


@PENALTIES.register("none")
def no_penalty(*, weight: float = 0.0, symmetry: str | None = None, form: str | None = None) -> None:
    """The unpenalised baseline. ``symmetry`` names the generators whose violation is measured after training
    (read by the train stage, not here); ``weight`` and ``form`` have no effect."""
    return None
