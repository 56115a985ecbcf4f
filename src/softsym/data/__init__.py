"""Jet data: ROOT/RNTuple/Parquet reading, padding, splits, loaders, and the Pythia 8 + FastJet generator.

Names are imported lazily: generator worker processes import ``softsym.data.generator`` without paying for
torch, which the containers and loaders need.
"""

import importlib

_EXPORTS = {
    "DataError": "softsym.data.errors",
    "InMemoryLoader": "softsym.data.loader",
    "JetArrays": "softsym.data.jets",
    "JetBatch": "softsym.data.jets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'softsym.data' has no attribute {name!r}")
