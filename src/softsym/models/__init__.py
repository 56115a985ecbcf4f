"""Particle-cloud models. ``build_model(name, ...)`` is the one way stages make them.

Each architecture lives in its own module; the registry maps a config name to ``module:Class`` and imports
lazily, so a new model is one new file plus one config file (and one line here).
"""

from __future__ import annotations

import importlib
from typing import Any

from softsym.models.base import JetModel, logits_from_p4, n_outputs_for

MODEL_REGISTRY: dict[str, str] = {
    "pfn": "softsym.models.pfn:PFN",
    "mlp": "softsym.models.mlp:FlatMLP",
    "particlenet": "softsym.models.particlenet:ParticleNet",
    "transformer": "softsym.models.transformer:ParticleTransformer",
    "lorentz_invariant": "softsym.models.lorentz_invariant:LorentzInvariantNet",
}


def build_model(name: str, *, n_features: int, n_classes: int, **hyperparameters: Any) -> JetModel:
    """Instantiate model ``name`` with the architecture options of its config (``model.sizes[size]``)."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_REGISTRY)}")
    module_name, class_name = MODEL_REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(n_features, n_classes, **hyperparameters)


__all__ = ["MODEL_REGISTRY", "JetModel", "build_model", "logits_from_p4", "n_outputs_for"]
