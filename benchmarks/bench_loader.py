"""Loader throughput: jets/s from ROOT files to padded tensors, against bare ``uproot.arrays``; peak memory.

    python benchmarks/bench_loader.py [--jets-per-file 50000] [--repeats 3] [--files F ...]

Makes JetClass-like files once (cached under data/cache/bench/: TTrees with JetClass's branches and label
dtypes, LZ4, one process per file, ~45 constituents per jet, baskets of ~500 jets as ROOT writes them), then
measures on 8 files:
- the read limit: ``TTree.arrays`` of exactly the columns the loader reads (4-vectors, PID scalars, labels),
  jagged, nothing else, with uproot's default file handler and with its memory map (the faster counts);
- ``jets_per_s["0" | "1" | "2"]``: one epoch of the streaming loader (all jets in one split, shuffled) with
  0, 1, 2 DataLoader workers, counting the jets of the padded ``JetBatch`` tensors it yields; its label
  pass (``plan_stream``, once per training, not per epoch) is timed apart as ``stream_plan_s``;
- ``in_memory_jets_per_s``: ``read_jets`` into padded arrays;
- ``peak_rss_mb``: peak RSS (VmHWM) of one in-process streaming epoch over 1x and 8x the files, each in a
  fresh process.
Each figure is the best of ``--repeats`` rounds in which the runs take turns. Writes
benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_info, write_result

ROOT_DIR = Path(__file__).resolve().parents[1]
CACHE = ROOT_DIR / "data" / "cache" / "bench"
RESULT = ROOT_DIR / "benchmarks" / "results" / "loader.json"
LABEL_DTYPES = {"QCD": np.float32, "Hbb": np.bool_, "Hcc": np.bool_, "Hgg": np.bool_, "H4q": np.bool_,
                "Hqql": np.bool_, "Zqq": np.int32, "Wqq": np.int32, "Tbqq": np.int32, "Tbl": np.int32}
PROCESSES = {"ZJetsToNuNu": ("QCD", 38), "TTBar": ("Tbqq", 55)}  # JetClass file stem: (label, mean particles)
N_PAIRS = 8          # 8 QCD + 8 TTBar files; throughput on 4 pairs (8 files), RSS on 1 vs 8 pairs
BASKET_ENTRIES = 500  # one extend() per basket: ~500 jets, as in ROOT-written JetClass files (32 kB baskets)
READ_COLUMNS = ["part_energy", "part_px", "part_py", "part_pz", "part_charge", "part_isChargedHadron",
                "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon",
                *(f"label_{c}" for c in LABEL_DTYPES)]


def write_file(path: Path, label: str, mean_particles: int, n_jets: int, seed: int) -> None:
    """A JetClass-like TTree written by uproot (counter + float[] branches), atomically."""
    import awkward as ak
    import uproot

    rng = np.random.default_rng(seed)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".root", dir=path.parent)
    os.close(fd)
    try:
        with uproot.recreate(tmp, compression=uproot.LZ4(4)) as file:
            tree = None
            for first in range(0, n_jets, BASKET_ENTRIES):
                n = min(BASKET_ENTRIES, n_jets - first)
                counts = np.clip(rng.poisson(mean_particles, n), 1, None)
                jet = np.repeat(np.arange(n), counts)
                pt = rng.exponential(1.0, counts.sum()) * 20
                pt = pt[np.lexsort((-pt, jet))]  # sorted in float64, stored as float32, as real files are
                eta, phi = rng.normal(0, 0.3, len(pt)), rng.uniform(-np.pi, np.pi, len(pt))
                floats = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
                          "energy": pt * np.cosh(eta), "deta": eta, "dphi": phi}
                for name in ("d0val", "d0err", "dzval", "dzerr"):
                    floats[name] = rng.normal(0, 0.05, len(pt))
                floats["charge"] = rng.choice([-1.0, 0.0, 1.0], len(pt))
                pid = rng.integers(0, 5, len(pt))
                ints = {name: (pid == k).astype(np.int32) for k, name in enumerate(
                    ["isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon"])}
                particles = ak.zip({**{k: ak.unflatten(v.astype(np.float32), counts) for k, v in floats.items()},
                                    **{k: ak.unflatten(v, counts) for k, v in ints.items()}})
                columns = {"part": particles}
                for name in ("pt", "eta", "phi", "energy", "nparticles", "sdmass", "tau1", "tau2", "tau3", "tau4"):
                    columns[f"jet_{name}"] = rng.normal(size=n).astype(np.float32)
                for cls, dtype in LABEL_DTYPES.items():
                    columns[f"label_{cls}"] = np.full(n, cls == label).astype(dtype)
                if tree is None:
                    tree = file.mktree("tree", {k: (v.type.content if k == "part" else v.dtype)
                                                for k, v in columns.items()})
                tree.extend(columns)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def bench_files(jets_per_file: int) -> list[list[str]]:
    """The cached files, as pairs [QCD file, TTBar file], made when missing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(N_PAIRS):
        pair = []
        for k, (stem, (label, mean_particles)) in enumerate(PROCESSES.items()):
            path = CACHE / f"{stem}_{jets_per_file}_b{BASKET_ENTRIES}_{i:03d}.root"
            if not path.exists():
                print(f"writing {path}", flush=True)
                write_file(path, label, mean_particles, jets_per_file, seed=1000 * k + i)
            pair.append(str(path))
        pairs.append(pair)
    return pairs


def best_rates(runs: dict[str, callable], repeats: int) -> dict[str, float]:
    """Best jets/s of each run (a callable returning the number of jets it made) over ``repeats`` rounds.

    The runs take turns within each round, so that a busy spell on a shared machine hits them alike.
    """
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            n = run()
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def uproot_read(files: list[str], memory_map: bool = False) -> int:
    import uproot

    n = 0
    for path in files:
        with uproot.open(path, **({"handler": uproot.MemmapSource} if memory_map else {})) as file:
            arrays = file["tree"].arrays(READ_COLUMNS, how=dict)
            n += len(arrays["label_QCD"])
    return n


def stream_plan(files: list[str]):
    """The streaming plan (the label pass) with every jet in one split: made once, as for a training."""
    from softsym.data.stream_plan import plan_stream

    return plan_stream(files, fractions=(1.0, 0.0, 0.0), seed=0)


def stream_epoch(plan, workers: int, batch_size: int) -> int:
    """One shuffled epoch of the streaming loader; returns the number of jets in its padded batches."""
    from softsym.data.streaming import StreamingJetLoader

    loader = StreamingJetLoader(plan, "train", batch_size=batch_size, loader_workers=workers)
    return sum(len(batch) for batch in loader)


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across fork + exec)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def rss_child(n_pairs: int, batch_size: int, jets_per_file: int) -> None:
    files = [f for pair in bench_files(jets_per_file)[:n_pairs] for f in pair]
    n = stream_epoch(stream_plan(files), 0, batch_size)
    print(json.dumps({"jets": n, "peak_rss_mb": _peak_rss_mb()}))


def peak_rss_mb(n_pairs: int, batch_size: int, jets_per_file: int) -> float:
    """Peak RSS of a streaming epoch (in-process: 0 workers) over ``n_pairs`` pairs of files, in a new process."""
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(n_pairs),
                          "--batch-size", str(batch_size), "--jets-per-file", str(jets_per_file)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jets-per-file", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--files", nargs="+", help="measure throughput on these files (e.g. real JetClass) "
                        "instead of the generated ones")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        rss_child(args.rss_child, args.batch_size, args.jets_per_file)
        return

    from softsym.data.reader import read_jets

    pairs = bench_files(args.jets_per_file)
    files = args.files or [f for pair in pairs[:4] for f in pair]
    load_before = os.getloadavg()
    start = time.perf_counter()
    plan = stream_plan(files)
    plan_seconds = time.perf_counter() - start
    runs = {"uproot": lambda: uproot_read(files), "uproot_memmap": lambda: uproot_read(files, memory_map=True),
            **{str(w): (lambda w=w: stream_epoch(plan, w, args.batch_size)) for w in (0, 1, 2)},
            "in_memory": lambda: len(read_jets(files)[0])}
    rates = best_rates(runs, args.repeats)
    read_limit = max(rates["uproot"], rates["uproot_memmap"])
    for name, rate in rates.items():
        print(f"{name:>14}: {rate:>9,.0f} jets/s   {rate / read_limit:.2f} x the read limit", flush=True)
    rss = {"1x": peak_rss_mb(1, args.batch_size, args.jets_per_file),
           "8x": peak_rss_mb(8, args.batch_size, args.jets_per_file)}
    rss["ratio_8x_to_1x"] = rss["8x"] / rss["1x"]
    print(f"peak RSS of a streaming epoch: 1x files {rss['1x']:.0f} MB, 8x files {rss['8x']:.0f} MB", flush=True)
    workers = ("0", "1", "2")
    result = {
        "jets_per_s": {k: round(rates[k]) for k in workers},
        "ratio_vs_uproot": {k: round(rates[k] / read_limit, 3) for k in workers},
        "uproot_jets_per_s": {"default": round(rates["uproot"]), "memmap": round(rates["uproot_memmap"])},
        "stream_plan_s": round(plan_seconds, 3),
        "in_memory_jets_per_s": round(rates["in_memory"]),
        "in_memory_ratio_vs_uproot": round(rates["in_memory"] / read_limit, 3),
        "peak_rss_mb": {k: round(v, 1) if k != "ratio_8x_to_1x" else round(v, 3) for k, v in rss.items()},
        "files": {"throughput": files if args.files else len(files), "rss_1x": 2, "rss_8x": 2 * N_PAIRS,
                  "jets_per_file": None if args.files else args.jets_per_file},
        "machine": machine_info(load_before),
        "command": " ".join(["python", "benchmarks/bench_loader.py", *sys.argv[1:]]),
    }
    write_result(RESULT, result)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
