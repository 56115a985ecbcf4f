"""Jet data: ROOT/RNTuple/Parquet reading, padding, splits, loaders, and the Pythia 8 + FastJet generator."""

from softsym.data.errors import DataError
from softsym.data.jets import JetArrays, JetBatch
from softsym.data.loader import InMemoryLoader

__all__ = ["DataError", "InMemoryLoader", "JetArrays", "JetBatch"]
