"""Particle-cloud models. ``MODELS.build(name, n_features=..., n_classes=..., **sizes)`` is the one way
stages make them.

Each architecture lives in its own module and registers its class with ``@MODELS.register(name)``; this
package imports every model module, so a new model is one new file plus one config file (and one import
line here).
"""

from softsym.models import (  # noqa: F401  (each module registers its model in MODELS)
    lorentz_invariant,
    mlp,
    particlenet,
    pfn,
    transformer,
)
from softsym.models.base import MODELS, JetModel, logits_from_p4, n_outputs_for

__all__ = ["MODELS", "JetModel", "logits_from_p4", "n_outputs_for"]
