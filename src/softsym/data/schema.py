"""The JetClass schema: canonical column names, where they live in one file, and the form of a column.

``resolve_schema`` maps the canonical JetClass names (``part_px`` ..., ``label_<class>``) to the names in one
file, with the user's ``branches`` mapping, and fails with a ``DataError`` that lists what the file holds.
``flat_jagged`` / ``flat_scalar`` check that a column holds a list of numbers per jet, or one number per jet,
and give it as plain numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import awkward as ak
import numpy as np

from softsym.data.errors import DataError

if TYPE_CHECKING:
    from softsym.data.files import JetSource

P4_BRANCHES = ("part_energy", "part_px", "part_py", "part_pz")  # the order of p4's last axis: (E, px, py, pz)
DEFAULT_SCALARS = ("part_charge", "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton",
                   "part_isElectron", "part_isMuon")
JETCLASS_CLASSES = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")
LABEL_PREFIX = "label_"

Column = np.ndarray | tuple[np.ndarray, np.ndarray]  # one value per jet | (offsets from 0, flat values)


@dataclass(frozen=True)
class FileSchema:
    """Where the canonical columns live in one file (values are the file's own column names)."""

    p4: tuple[str, str, str, str]   # the file's names for P4_BRANCHES
    labels: dict[str, str]          # class name -> file column, for every label column the file has
    scalars: dict[str, str]         # canonical scalar name -> file column, for those the file has


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def resolve_schema(source: JetSource, branches: Mapping[str, str] | None,
                   scalar_branches: Sequence[str]) -> FileSchema:
    """Resolve canonical names through ``branches`` against ``source``; a missing required column is a DataError."""
    mapping = dict(branches or {})
    present = set(source.names)
    what, whats = {"rntuple": ("field", "fields"), "parquet": ("column", "columns")}.get(
        source.kind, ("branch", "branches"))

    def missing(canonical: str, name: str) -> DataError:
        via = f" (mapped from {canonical} by data.branches)" if name != canonical else ""
        return DataError(f"{source.path}: {source.description} has no {what} '{name}'{via}; {whats} found: "
                         f"{_listing(source.names)}")

    p4 = []
    for canonical in P4_BRANCHES:
        name = mapping.get(canonical, canonical)
        if name not in present:
            raise missing(canonical, name)
        p4.append(name)
    labels: dict[str, str] = {}
    for canonical, name in mapping.items():
        if canonical.startswith(LABEL_PREFIX):
            if name not in present:
                raise missing(canonical, name)
            labels[canonical[len(LABEL_PREFIX):]] = name
    mapped_names = set(mapping.values())
    for name in source.names:
        if name.startswith(LABEL_PREFIX) and name not in mapped_names:
            labels.setdefault(name[len(LABEL_PREFIX):], name)
    if not labels:
        raise DataError(f"{source.path}: {source.description} has no label {whats} (label_<class>, e.g. label_QCD, "
                        f"label_Tbqq; or map them with data.branches); {whats} found: {_listing(source.names)}")
    scalars = {}
    for canonical in scalar_branches:
        name = mapping.get(canonical, canonical)
        if name in present:
            scalars[canonical] = name
        elif canonical in mapping:
            raise missing(canonical, name)
    return FileSchema(tuple(p4), labels, scalars)


def flat_jagged(array: ak.Array, path: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (starting at 0) and flat content of a ``var * number`` column, without copying when possible."""
    layout = ak.to_layout(array)
    if layout.is_option:
        if bool(np.any(ak.is_none(array, axis=0))):
            raise DataError(f"{path}: {name} has missing (null) jets; expected a list of numbers per jet")
        layout = ak.to_layout(ak.drop_none(array, axis=0))
    if isinstance(layout, ak.contents.ListArray | ak.contents.RegularArray):
        layout = layout.to_ListOffsetArray64(True)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        raise DataError(f"{path}: {name} has type {array.type.content}; expected a list of numbers per jet "
                        f"(std::vector<float>, float[] or var * float32)")
    content = layout.content
    if content.is_option:
        if bool(np.any(ak.is_none(ak.Array(content)))):
            raise DataError(f"{path}: {name} has missing (null) values inside jets")
        content = ak.to_layout(ak.drop_none(ak.Array(content)))
    if not isinstance(content, ak.contents.NumpyArray):
        raise DataError(f"{path}: {name} has type {array.type.content}; expected a list of numbers per jet")
    offsets = np.asarray(layout.offsets, dtype=np.int64)
    values = np.asarray(content.data)
    if offsets[0] != 0:
        values = values[offsets[0]:offsets[-1]]
        offsets = offsets - offsets[0]
    return offsets, values


def flat_scalar(array: ak.Array, path: str, name: str) -> np.ndarray:
    """One number per jet as numpy."""
    try:
        return ak.to_numpy(array, allow_missing=False)
    except Exception as err:
        raise DataError(f"{path}: {name} has type {array.type.content}; expected one number per jet") from err
