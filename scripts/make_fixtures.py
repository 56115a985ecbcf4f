"""Write the tiny JetClass-schema test fixtures under tests/fixtures/, one directory per file form.

The same jets (a QCD file and a TTBar file: one process per file, as in JetClass) are written as
- ``rootio/``  a TTree written by ROOT itself: ``std::vector<float>`` / ``std::vector<int32_t>`` particle
  branches, LZ4, mixed label dtypes (needs PyROOT: CERN's ``root`` wheel, used once from a throwaway venv),
- ``mktree/``  a TTree written by uproot ``mktree`` (counter ``npart`` + ``float[]`` branches),
- ``rntuple/`` an RNTuple (what uproot >= 5.7 writes for ``file[name] = {...}``),
- ``parquet/`` Parquet written by awkward.

Usage (from the repository root):
    .venv/bin/python scripts/make_fixtures.py                    # mktree, rntuple, parquet
    /path/to/venv-with-root/bin/python scripts/make_fixtures.py --forms rootio

Values are rounded to 12 mantissa bits so the committed files stay small; a few jets are stored out of pT
order (the reader must sort them) and the QCD file holds one jet without constituents.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

FORMS = ("rootio", "mktree", "rntuple", "parquet")
LABELS = {  # JetClass label dtypes: float, bool, int32
    "label_QCD": np.float32, "label_Hbb": np.bool_, "label_Hcc": np.bool_, "label_Hgg": np.bool_,
    "label_H4q": np.bool_, "label_Hqql": np.bool_, "label_Zqq": np.int32, "label_Wqq": np.int32,
    "label_Tbqq": np.int32, "label_Tbl": np.int32,
}
PARTICLE_FLOATS = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi", "part_d0val",
                   "part_charge")
PARTICLE_INTS = ("part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron",
                 "part_isMuon")
JET_FLOATS = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "aux_genpart_pt")
PROCESSES = {"QCD": ("label_QCD", 12, 0), "TTBar": ("label_Tbqq", 22, 1)}  # label, mean particles, seed
N_JETS = 48


def _round(values: np.ndarray, up: bool = False) -> np.ndarray:
    """float32 with the low 11 mantissa bits cleared (towards zero, or away from it with ``up``)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    if up:
        bits = bits + np.uint32(0x7FF)
    return (bits & np.uint32(0xFFFFF800)).view(np.float32)


def make_jets(process: str, n_jets: int = N_JETS) -> dict[str, np.ndarray]:
    """Flat particle arrays (with ``counts``), jet arrays and one-hot labels for one process."""
    label, mean_particles, seed = PROCESSES[process]
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.poisson(mean_particles, n_jets), 1, None)
    if process == "QCD":
        counts[5] = 0  # a jet with no constituents: dropped and counted by the reader
    total = int(counts.sum())
    jet_of = np.repeat(np.arange(n_jets), counts)
    jet_pt = rng.uniform(500, 650, n_jets)
    jet_eta = rng.uniform(-2, 2, n_jets)
    jet_phi = rng.uniform(-np.pi, np.pi, n_jets)
    share = rng.exponential(1.0, total)
    share /= np.bincount(jet_of, share, n_jets)[jet_of]
    pt = jet_pt[jet_of] * share
    deta = rng.normal(0, 0.15, total)
    dphi = rng.normal(0, 0.15, total)
    eta, phi = jet_eta[jet_of] + deta, jet_phi[jet_of] + dphi
    # pT-descending inside each jet, as in JetClass, except a few jets stored in random order
    order = np.lexsort((-pt, jet_of))
    shuffled = np.isin(jet_of, [1, 7, 30])
    order[shuffled[order]] = rng.permutation(order[shuffled[order]])
    order = order[np.argsort(jet_of[order], kind="stable")]
    pt, eta, phi, deta, dphi = pt[order], eta[order], phi[order], deta[order], dphi[order]
    px, py, pz = (_round(v) for v in (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)))
    pid = rng.choice(5, total, p=[0.6, 0.1, 0.25, 0.03, 0.02])
    charged = (pid == 0) | (pid >= 3)
    charge = np.where(charged, rng.choice([-1.0, 1.0], total), 0.0)
    mass = np.where(charged, 0.13957, 0.0)
    energy = _round(np.sqrt(px.astype(np.float64) ** 2 + py ** 2 + pz ** 2 + mass ** 2), up=True)
    jets = {"counts": counts, "part_px": px, "part_py": py, "part_pz": pz, "part_energy": energy,
            "part_deta": _round(deta), "part_dphi": _round(dphi),
            "part_d0val": _round(np.where(charged, rng.normal(0, 0.01, total), 0.0)),
            "part_charge": charge.astype(np.float32)}
    for k, name in enumerate(PARTICLE_INTS):
        jets[name] = (pid == k).astype(np.int32)
    jet_energy = np.bincount(jet_of, energy.astype(np.float64), n_jets)
    jets.update({"jet_pt": _round(jet_pt), "jet_eta": _round(jet_eta), "jet_phi": _round(jet_phi),
                 "jet_energy": _round(jet_energy), "jet_nparticles": counts.astype(np.float32),
                 "aux_genpart_pt": _round(jet_pt * rng.normal(1, 0.05, n_jets))})
    for name, dtype in LABELS.items():
        jets[name] = np.full(n_jets, name == label).astype(dtype)
    return jets


def _atomic(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` to a temporary name beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _awkward_columns(jets: dict[str, np.ndarray]) -> dict:
    import awkward as ak

    counts = jets["counts"]
    columns = {name: ak.unflatten(jets[name], counts) for name in (*PARTICLE_FLOATS, *PARTICLE_INTS)}
    columns.update({name: jets[name] for name in (*JET_FLOATS, *LABELS)})
    return columns


def write_mktree(path: Path, jets: dict[str, np.ndarray]) -> None:
    import awkward as ak
    import uproot

    columns = _awkward_columns(jets)
    particles = ak.zip({name[len("part_"):]: columns.pop(name) for name in (*PARTICLE_FLOATS, *PARTICLE_INTS)})

    def write(tmp: str) -> None:
        with uproot.recreate(tmp, compression=uproot.LZ4(4)) as file:
            tree = file.mktree("tree", {"part": particles.type.content,
                                        **{name: values.dtype for name, values in columns.items()}})
            tree.extend({"part": particles, **columns})  # branches part_px ... with counter npart
    _atomic(path, write)


def write_rntuple(path: Path, jets: dict[str, np.ndarray]) -> None:
    import uproot

    def write(tmp: str) -> None:
        with uproot.recreate(tmp, compression=uproot.LZ4(4)) as file:
            file["tree"] = _awkward_columns(jets)
    _atomic(path, write)


def write_parquet(path: Path, jets: dict[str, np.ndarray]) -> None:
    import awkward as ak

    _atomic(path, lambda tmp: ak.to_parquet(ak.zip(_awkward_columns(jets), depth_limit=1), tmp))


def write_rootio(path: Path, jets: dict[str, np.ndarray]) -> None:
    """A TTree written by ROOT itself, with JetClass's branch types and LZ4 compression."""
    import ROOT

    def write(tmp: str) -> None:
        file = ROOT.TFile(tmp, "RECREATE", "", 404)  # 404 = LZ4, level 4 (as JetClass)
        tree = ROOT.TTree("tree", "tree")
        vectors = {name: ROOT.std.vector["float"]() for name in PARTICLE_FLOATS}
        vectors.update({name: ROOT.std.vector["int"]() for name in PARTICLE_INTS})
        for name, vector in vectors.items():
            tree.Branch(name, vector)
        scalars = {name: np.zeros(1, np.float32) for name in JET_FLOATS}
        scalars.update({name: np.zeros(1, dtype) for name, dtype in LABELS.items()})
        leaf_type = {np.dtype(np.float32): "F", np.dtype(np.bool_): "O", np.dtype(np.int32): "I"}
        for name, buffer in scalars.items():
            tree.Branch(name, buffer, f"{name}/{leaf_type[buffer.dtype]}")
        offsets = np.concatenate([[0], np.cumsum(jets["counts"])])
        for i in range(len(jets["counts"])):
            for name, vector in vectors.items():
                vector.clear()
                for value in jets[name][offsets[i]:offsets[i + 1]].tolist():
                    vector.push_back(value)
            for name, buffer in scalars.items():
                buffer[0] = jets[name][i]
            tree.Fill()
        tree.Write()
        file.Close()
    _atomic(path, write)


WRITERS = {"rootio": (write_rootio, ".root"), "mktree": (write_mktree, ".root"),
           "rntuple": (write_rntuple, ".root"), "parquet": (write_parquet, ".parquet")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures")
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=["mktree", "rntuple", "parquet"])
    args = parser.parse_args()
    for form in args.forms:
        write, suffix = WRITERS[form]
        for process in PROCESSES:
            path = args.out / form / f"{process}_000{suffix}"
            write(path, make_jets(process))
            print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
