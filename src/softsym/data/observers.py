"""Per-jet observers: one number per jet read from the files beside the particles, never a model input.

They travel with the jets (``JetArrays.observers``) so that the predictions can be written next to the
jet's own observables: the JetClass jet branches (``JET_OBSERVABLES``) whenever every file holds them, and
the user's ``data.observers``, which every file must hold. Names go through ``data.branches`` like the
particle columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from softsym.data.errors import DataError
from softsym.data.files import JetSource

JET_OBSERVABLES = ("jet_pt", "jet_eta", "jet_phi", "jet_sdmass", "jet_nparticles")


class ObserverReader:
    """Fills ``[capacity]`` arrays with the observers of the jets the reader keeps, file by file."""

    def __init__(self, required: Sequence[str], capacity: int, branches: Mapping[str, str] | None = None) -> None:
        self.required = tuple(dict.fromkeys(required))
        self.names = tuple(dict.fromkeys([*self.required, *JET_OBSERVABLES]))
        self.branches = dict(branches or {})
        self.values = {name: np.full(capacity, np.nan) for name in self.names}
        self.in_every_file = set(self.names)
        self.columns: dict[str, str] = {}

    def open_file(self, source: JetSource) -> None:
        """Which observers this file holds (a missing ``data.observers`` entry is a DataError)."""
        present = set(source.names)
        self.columns = {}
        for name in self.names:
            column = self.branches.get(name, name)
            if column in present:
                self.columns[name] = column
            elif name in self.required:
                via = f" (mapped from {name} by data.branches)" if column != name else ""
                raise DataError(f"{source.path}: data.observers names '{column}'{via}, which {source.description} "
                                f"does not hold; it holds {', '.join(source.names)}")
            else:
                self.in_every_file.discard(name)

    def read(self, source: JetSource, start: int, stop: int, rows: np.ndarray, at: int) -> None:
        """The observers of entries ``start + rows`` into positions ``at, at + 1, ...``."""
        if not self.columns or not len(rows):
            return
        columns = source.read(list(self.columns.values()), start, stop)
        for name, column in self.columns.items():
            values = columns[column]
            if isinstance(values, tuple):
                raise DataError(f"{source.path}: observer {column} holds a list per jet; expected one number per jet")
            self.values[name][at:at + len(rows)] = np.asarray(values, dtype=np.float64)[rows]

    def result(self, n_filled: int) -> dict[str, np.ndarray]:
        """The observers every file held (and all of ``data.observers``), cut to the ``n_filled`` jets kept."""
        return {name: self.values[name][:n_filled] for name in self.names
                if name in self.required or name in self.in_every_file}
