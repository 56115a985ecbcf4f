"""Generator throughput: jets/s of one worker against raw ``pythia.next()``, and the 1 -> 2 worker speed-up.

    python benchmarks/bench_generator.py [--jets 300] [--raw-events 300] [--scaling-jets 150]

For each process (qcd, ttbar), with the default generation config (jet pT 550-650 GeV, |eta| < 2, MPI on,
detector on):
- ``raw_events_per_s``: ``pythia.next()`` alone, same Pythia settings, nothing read out (measured before and
  after ours, averaged);
- ``jets_per_s``: one shard of ``--jets`` jets made by ``generate_shard`` in this process (Pythia's
  ``nextBatch`` + awkward record, detector, anti-kt over the batch, matching, soft drop, N-subjettiness,
  ROOT writing), with ``jets_per_event`` = jets / events it consumed;
- ``efficiency`` = jets_per_s / (raw_events_per_s * jets_per_event): the fraction of the raw generator rate
  we keep (target >= 0.8). Pythia's initialisation (once per shard) is reported apart and left out of the
  efficiency; ``efficiency_with_init`` includes it.
Each figure is given in CPU time of this process (robust on a shared machine) and in wall time.
``scaling``: ``generate_shards`` of ``--scaling-jets`` jets per class in 4 shards with 1 and 2 workers
(wall time, fresh cache each), speed-up = t1 / t2; it includes spawning workers and their imports.
``cpu_per_wall`` (CPU seconds of this process and its workers per wall second) tells how many cores the
run actually got: on a shared machine a speed-up below 2 with cpu_per_wall well below 2 is contention.
``speedup_projected_two_free_cores`` = 2 * cpu_1 / cpu_2 is what two idle cores would give if the workers'
CPU split evenly (it charges the workers' start-up, spawn and imports); an estimate, labelled as such.
``mpi_cost``: raw ``pythia.next()`` rate with MPI on vs off. Writes benchmarks/results/generator.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import machine_info, write_result

ROOT_DIR = Path(__file__).resolve().parents[1]
RESULT = ROOT_DIR / "benchmarks" / "results" / "generator.json"


class Clock:
    """Wall and CPU time of this process over a block."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def raw_rate(config, process: str, n_events: int, seed: int) -> dict:
    from softsym.data.pythia.events import make_pythia

    pythia = make_pythia(config, process, seed)
    for _ in range(5):  # warm-up: first events touch cold tables
        pythia.next()
    with Clock() as clock:
        n_ok = sum(bool(pythia.next()) for _ in range(n_events))
    return {"events": n_ok, "cpu_s": clock.cpu, "wall_s": clock.wall}


def our_rate(config, process: str, n_jets: int, out: Path) -> dict:
    from softsym.data.pythia import ShardTask, generate_shard
    from softsym.data.pythia.events import make_pythia

    with Clock() as init:
        make_pythia(config, process, 1)
    task = ShardTask(config, process, 0, n_jets, out / f"{process}.root")
    with Clock() as clock:
        stats = generate_shard(task)
    return {"jets": stats.n_jets, "events": stats.n_events, "cpu_s": clock.cpu, "wall_s": clock.wall,
            "init_cpu_s": init.cpu, "init_wall_s": init.wall}


def per_process(config, process: str, n_jets: int, n_raw: int, out: Path) -> dict:
    before = raw_rate(config, process, n_raw, seed=2)
    ours = our_rate(config, process, n_jets, out)
    after = raw_rate(config, process, n_raw, seed=3)
    jets_per_event = ours["jets"] / ours["events"]
    figures = {"jets_per_event": round(jets_per_event, 4), "jets": ours["jets"], "events": ours["events"],
               "raw_events": before["events"] + after["events"]}
    for clock in ("cpu", "wall"):
        raw = (before["events"] + after["events"]) / (before[f"{clock}_s"] + after[f"{clock}_s"])
        init = ours[f"init_{clock}_s"]
        jets_per_s = ours["jets"] / (ours[f"{clock}_s"] - init)
        figures[clock] = {
            "raw_events_per_s": round(raw, 2),
            "raw_jets_per_s": round(raw * jets_per_event, 2),
            "jets_per_s": round(jets_per_s, 2),
            "jets_per_s_with_init": round(ours["jets"] / ours[f"{clock}_s"], 2),
            "pythia_init_s": round(init, 3),
            "efficiency": round(jets_per_s / (raw * jets_per_event), 3),
            "efficiency_with_init": round(ours["jets"] / ours[f"{clock}_s"] / (raw * jets_per_event), 3),
        }
    return figures


def scaling(n_jets: int) -> dict:
    """Wall time of 1 and 2 workers, and the CPU they got: cpu / wall near 2 means two free cores."""
    from softsym.data.pythia import generate_shards

    out = {"jets": 2 * n_jets, "shards": 4}
    for workers in (1, 2):
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with tempfile.TemporaryDirectory() as tmp, Clock() as clock:
            generate_shards(out_dir=tmp, n_jets_per_class=n_jets, jets_per_shard=n_jets // 2, seed=9,
                            n_workers=workers)
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        out[f"seconds_{workers}_worker"] = round(clock.wall, 2)
        out[f"cpu_seconds_{workers}_worker"] = round(clock.cpu + children, 2)
        out[f"cpu_per_wall_{workers}_worker"] = round((clock.cpu + children) / clock.wall, 2)
    out["speedup"] = round(out["seconds_1_worker"] / out["seconds_2_worker"], 3)
    # what two free cores would give if the two workers' CPU time splits evenly (an estimate, not a measurement)
    out["speedup_projected_two_free_cores"] = round(2 * out["cpu_seconds_1_worker"] / out["cpu_seconds_2_worker"], 3)
    return out


def mpi_cost(config, n_events: int) -> dict:
    from dataclasses import replace

    out = {}
    for process in ("qcd", "ttbar"):
        on = raw_rate(config, process, n_events, seed=4)
        off = raw_rate(replace(config, mpi=False), process, n_events, seed=4)
        out[process] = {"events_per_cpu_s_mpi_on": round(on["events"] / on["cpu_s"], 2),
                        "events_per_cpu_s_mpi_off": round(off["events"] / off["cpu_s"], 2)}
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jets", type=int, default=300, help="jets per process for the per-worker rate")
    parser.add_argument("--raw-events", type=int, default=300, help="raw pythia.next() events, before and after")
    parser.add_argument("--scaling-jets", type=int, default=150, help="jets per class for the 1 vs 2 workers run")
    args = parser.parse_args()

    import fastjet  # noqa: F401 - imported once up front, as in a long-running worker
    import uproot  # noqa: F401

    import softsym.physics.substructure  # noqa: F401
    from softsym.data.pythia import GenerationConfig

    config = GenerationConfig(n_jets_per_class=args.jets, jets_per_shard=args.jets)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        processes = {p: per_process(config, p, args.jets, args.raw_events, Path(out)) for p in ("qcd", "ttbar")}
    result = {
        "benchmark": "generator",
        "config": {k: v for k, v in config.describe().items() if k not in ("n_jets_per_class", "jets_per_shard")},
        "per_process": processes,
        "target": "efficiency >= 0.8 (our overhead beyond pythia.next() <= 25%)",
        "scaling": scaling(args.scaling_jets),
        "mpi_cost": mpi_cost(config, 100),
        "machine": {**machine_info(load_before), "cpu": cpu_model()},
        "command": " ".join(["python", "benchmarks/bench_generator.py", *sys.argv[1:]]),
    }
    write_result(RESULT, result)
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
