"""Per-jet predictions beside the jet's observables, as Parquet or a ROOT TTree (weaver's ``--predict-output``).

One row per jet: ``score_<class>`` (the class probabilities), ``label`` (the class index), the jet observables
``jet_pt, jet_eta, jet_phi, jet_sdmass, jet_nparticles`` and any further observers read from the files.
An observable the files carried (``JetArrays.observers``) is written as read; otherwise it is computed from
the constituents kept in the padded arrays (``constituent_observables``): the summed four-vector's pT, η, φ,
the number of real particles and the soft-drop mass of ``softsym.physics.substructure`` (β = 0, z_cut = 0.1,
R0 = 0.8, as the generator writes ``jet_sdmass``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from softsym.atomic import write_atomic
from softsym.data.jets import JetArrays, JetBatch
from softsym.data.observers import JET_OBSERVABLES

FORMATS = {"parquet": ".parquet", "root": ".root"}
TREE_NAME = "predictions"


def constituent_observables(p4: np.ndarray, mask: np.ndarray,
                            names: Sequence[str] = JET_OBSERVABLES) -> dict[str, np.ndarray]:
    """``names`` (of ``JET_OBSERVABLES``) computed from padded constituents ``p4 [N, P, 4]`` (E, px, py, pz) and
    ``mask [N, P]``."""
    mask = np.asarray(mask, bool)
    p4 = np.where(mask[..., None], np.asarray(p4, np.float64), 0.0)
    energy, px, py, pz = (p4[..., i].sum(1) for i in range(4))
    pt = np.hypot(px, py)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "jet_pt":
            out[name] = pt
        elif name == "jet_eta":
            out[name] = np.arcsinh(pz / np.maximum(pt, 1e-12))
        elif name == "jet_phi":
            out[name] = np.arctan2(py, px)
        elif name == "jet_nparticles":
            out[name] = mask.sum(1).astype(np.float64)
        elif name == "jet_sdmass":
            out[name] = soft_drop_mass(p4, mask)
        else:
            raise ValueError(f"cannot compute observer {name!r} from constituents; expected one of {JET_OBSERVABLES}")
    return out


def soft_drop_mass(p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Soft-drop mass (GeV) of padded jets; 0 for a jet without constituents."""
    from softsym.physics.substructure import jet_substructure

    counts = mask.sum(1)
    out = np.zeros(len(counts))
    keep = counts > 0
    if keep.any():
        real = p4[keep][mask[keep]]
        out[keep] = jet_substructure(real[:, 1], real[:, 2], real[:, 3], real[:, 0], counts[keep], n_tau=1).sdmass
    return out


def jet_observables(arrays: JetArrays) -> dict[str, np.ndarray]:
    """The jet observables and observers of ``arrays``: those read from the files as read, the other
    ``JET_OBSERVABLES`` computed from the constituents."""
    missing = [name for name in JET_OBSERVABLES if name not in arrays.observers]
    computed = constituent_observables(arrays.p4, arrays.mask, missing) if missing else {}
    out = {name: np.asarray(arrays.observers[name]) if name in arrays.observers else computed[name]
           for name in JET_OBSERVABLES}
    out.update({k: np.asarray(v) for k, v in arrays.observers.items() if k not in out})
    return out


def batch_observables(batches: Iterable[JetBatch]) -> dict[str, np.ndarray]:
    """``JET_OBSERVABLES`` from the constituents of every batch, in order (jets not held in memory)."""
    parts: list[dict[str, np.ndarray]] = []
    for batch in batches:
        parts.append(constituent_observables(batch.p4.cpu().numpy(), batch.mask.cpu().numpy()))
    if not parts:
        return {name: np.zeros(0) for name in JET_OBSERVABLES}
    return {name: np.concatenate([p[name] for p in parts]) for name in JET_OBSERVABLES}


def prediction_columns(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                       observables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The table's columns: ``score_<class>`` per class, ``label``, then the observables (all length N)."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2 or probs.shape != (len(labels), len(class_names)):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(labels)} jets of "
                         f"{len(class_names)} classes")
    columns: dict[str, np.ndarray] = {f"score_{c}": probs[:, k].astype(np.float32) for k, c in enumerate(class_names)}
    columns["label"] = labels.astype(np.int32)
    for name, values in observables.items():
        values = np.asarray(values)
        if values.shape != labels.shape:
            raise ValueError(f"observer {name} has {values.shape} values for {labels.shape[0]} jets")
        columns[name] = values.astype(np.int32) if name == "jet_nparticles" else values.astype(np.float32)
    return columns


def write_predictions(path: str | Path, columns: Mapping[str, np.ndarray], fmt: str = "parquet") -> Path:
    """Write ``columns`` to ``path`` with the format's suffix (``.parquet``, or ``.root`` holding the TTree
    ``predictions``), atomically; returns the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"predictions.format={fmt!r}: expected one of {sorted(FORMATS)}")
    path = Path(path).with_suffix(FORMATS[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: np.asarray(v) for k, v in columns.items()})
        return write_atomic(path, lambda tmp: pq.write_table(table, tmp))

    import uproot

    def write_root(tmp: Path) -> None:
        with uproot.recreate(tmp) as f:
            f.mktree(TREE_NAME, {k: np.asarray(v).dtype for k, v in columns.items()})
            f[TREE_NAME].extend({k: np.asarray(v) for k, v in columns.items()})

    return write_atomic(path, write_root)


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """A predictions file (either format) back as columns."""
    path = Path(path)
    if path.suffix == ".root":
        import uproot

        with uproot.open(path) as f:
            return {k: np.asarray(v) for k, v in f[TREE_NAME].arrays(library="np").items()}
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table[name].to_numpy() for name in table.column_names}
