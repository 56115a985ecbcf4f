"""The complexity stage of a `paper` job against that job's training, on one CPU thread; where its time goes;
and whether the `paper` budgets are stable (doubling the evaluation jets and the probes).

    python benchmarks/bench_complexity.py [--model pfn] [--skip-stability] [--skip-profile]

Setup: the `paper` experiment's settings (configs/experiment/paper.yaml: 2 × 2500 jets, 64 particles, model
size small, 6 epochs, its complexity budgets), run in-process through the real stages (data, train,
complexity) with ``threads=1``. Pythia is not installed on the benchmark machine, so the jets are
``synthetic_jets(2500, max_particles=64)`` with 20% of the labels flipped at random (the synthetic task is
nearly separable; flipped labels give a loss surface like a real tagger's, loss ~0.5, as in bench_hessian.py),
written once to a JetClass-schema file (all QCD-shaped jets first, then all top-shaped ones: the file order a
"first N" evaluation set would get wrong) under data/cache/bench_complexity/.

- timing: seconds of the train stage and of the complexity stage, the complexity stage's parts (cProfile of a
  second run of the stage, cumulative time of its main calls);
- stability (--stability): with the trained model, the top eigenvalue, the trace, the Goldstone curvature ratio
  and GC at the `paper` budget (eval_jets, slq_probes, trace_matvecs) and at twice it, for the first budget
  and the budgets above it, and the relative change of each (the criterion: < 10%).
Writes benchmarks/results/complexity_stage.json and benchmarks/results/complexity_stability.json and prints
README tables. The machine may be shared with other jobs: the load average is recorded.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import dataclasses  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import RESULTS, machine_info, write_result  # noqa: E402

CACHE = ROOT / "data" / "cache" / "bench_complexity"


def jets_file() -> Path:
    from softsym.data.synthetic import synthetic_jets
    from tests.test_cli import write_jetclass_like

    path = CACHE / "jets_2500x2_p64_flip20.root"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        jets = synthetic_jets(2500, max_particles=64, seed=0)
        flip = np.random.default_rng(0).random(len(jets)) < 0.2  # a tagger-like loss (~0.5), not a separable task
        jets = dataclasses.replace(jets, labels=np.where(flip, 1 - jets.labels, jets.labels))
        write_jetclass_like(path, jets)
    return path


def compose_paper(model: str, *extra: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from softsym.cli import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=paper", "data=jetclass", f"data.paths=[{jets_file()}]",
                                           f"model={model}", "threads=1", "progress=false", "penalty.lambda=0.1",
                                           f"paths.checkpoints={CACHE}/ckpt", *extra])
    GlobalHydra.instance().clear()
    return cfg


class RecordingTracker:
    """A NullTracker that keeps the logged metrics."""

    def __init__(self) -> None:
        from softsym.tracking import NullTracker

        self._null = NullTracker()
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.update({k: float(v) for k, v in metrics.items()})

    def __getattr__(self, name):
        return getattr(self._null, name)


def run_job(model: str, profile: bool) -> tuple[dict, object]:
    from softsym.stages import STAGES
    from softsym.stages.context import StageContext

    cfg = compose_paper(model)
    tracker = RecordingTracker()
    ctx = StageContext(cfg, tracker, CACHE / f"run_{model}")
    seconds = {}
    for stage in ("data", "train", "complexity"):
        t0 = time.perf_counter()
        STAGES.get(stage)(ctx)
        seconds[stage] = time.perf_counter() - t0
        print(f"{model}: stage {stage} {seconds[stage]:.1f} s", flush=True)
    parts = {}
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        STAGES.get("complexity")(ctx)
        prof.disable()
        stats = pstats.Stats(prof)
        wanted = ("analyze_hessian", "lanczos", "estimate_trace", "spectral_density", "analyze_goldstone",
                  "goldstone_overlap", "curvature_ratio", "loss_profiles", "structural_null_space", "direction_error",
                  "symmetry_directions", "geometric_complexity", "fit_model_temperature",
                  "calibrated_curvature_ratio", "compressibility", "balance_relu_units", "evaluate_auc",
                  "sample_split", "_build_graphs", "_hvp_double_backward")
        for (file, _, name), row in stats.stats.items():
            if name in wanted and "softsym" in file:
                parts[name] = max(parts.get(name, 0.0), round(row[3], 2))  # cumulative seconds
        parts["total"] = round(sum(r[2] for r in stats.stats.values()), 2)
    keep = ("train_seconds", "hessian_seconds", "hessian_matvecs", "hessian_n_params", "hessian_top_eig",
            "hessian_trace", "hessian_trace_se", "geometric_complexity", "hessian_goldstone_curvature_ratio",
            "compressed_bits", "test_auc", "logit_temperature")
    return {"stage_seconds": {k: round(v, 2) for k, v in seconds.items()}, "profile_cumulative_seconds": parts,
            "metrics": {k: tracker.metrics[k] for k in keep if k in tracker.metrics},
            "complexity_over_train": round(seconds["complexity"] / seconds["train"], 3)}, ctx


def measure(ctx, eval_jets: int, probes: int, trace_matvecs: int, seed: int) -> dict[str, float]:
    """The four quantities of the stability criterion at one budget (as the stage computes them)."""
    import dataclasses

    from softsym.analysis import HessianOperator, analyze_hessian, geometric_complexity, symmetry_directions
    from softsym.analysis.goldstone.curvature import curvature_ratio
    from softsym.data.loaders import InMemoryLoader
    from softsym.data.stratify import sample_split
    from softsym.stages.options import hessian_operator_options, hessian_options

    cfg = ctx.cfg
    model, _ = ctx.trained_model()
    arrays = sample_split(ctx.dataset(), "test", eval_jets, seed)
    batches = list(InMemoryLoader(arrays, batch_size=cfg.complexity.batch_size))
    op = HessianOperator(model, batches, **hessian_operator_options(cfg))
    options = dataclasses.replace(hessian_options(cfg, progress=False), slq_probes=probes,
                                  trace_matvecs=trace_matvecs, seed=seed)
    t0 = time.perf_counter()
    hess = analyze_hessian(op, options=options)
    out = {"hessian_top_eig": hess.metrics["hessian_top_eig"], "hessian_trace": hess.metrics["hessian_trace"],
           "hessian_trace_se": hess.metrics["hessian_trace_se"],
           "hessian_eff_dim": hess.metrics.get("hessian_eff_dim", float("nan")),
           "hessian_eff_dim_se": hess.metrics.get("hessian_eff_dim_se", float("nan"))}
    symmetry = cfg.complexity.goldstone.symmetry or cfg.penalty.name
    directions = symmetry_directions(op.model, batches, symmetry, layer=cfg.complexity.goldstone.layer,
                                     param_names=op.names)
    ratio = curvature_ratio(op, directions, trace=hess.metrics["hessian_trace"],
                            trace_se=hess.metrics["hessian_trace_se"])
    out["hessian_goldstone_curvature_ratio"] = ratio.ratio
    out["hessian_goldstone_curvature_ratio_se"] = ratio.ratio_se
    out["geometric_complexity"] = geometric_complexity(model, batches)
    out["seconds"] = time.perf_counter() - t0
    out["signal_frac"] = float((arrays.labels != 0).mean())
    return out


CRITERION = ("hessian_top_eig", "hessian_trace", "hessian_goldstone_curvature_ratio", "geometric_complexity")


def stability(ctx, budgets: list[tuple[int, int, int]], seeds: list[int]) -> dict:
    rows = []
    for eval_jets, probes, matvecs in budgets:
        for seed in seeds:
            m = measure(ctx, eval_jets, probes, matvecs, seed)
            rows.append({"eval_jets": eval_jets, "slq_probes": probes, "trace_matvecs": matvecs, "seed": seed, **m})
            print(f"budget ({eval_jets} jets, {probes} probes, {matvecs} trace products) seed {seed}: "
                  + ", ".join(f"{k} {m[k]:.4g}" for k in CRITERION), flush=True)
    changes = []
    for (j1, p1, t1), (j2, p2, t2) in zip(budgets[:-1], budgets[1:], strict=True):
        for seed in seeds:
            a = next(r for r in rows if (r["eval_jets"], r["slq_probes"], r["seed"]) == (j1, p1, seed))
            b = next(r for r in rows if (r["eval_jets"], r["slq_probes"], r["seed"]) == (j2, p2, seed))
            rel = {k: abs(b[k] - a[k]) / max(abs(b[k]), 1e-300) for k in CRITERION}
            changes.append({"from": [j1, p1, t1], "to": [j2, p2, t2], "seed": seed,
                            **{k: round(v, 4) for k, v in rel.items()}, "max": round(max(rel.values()), 4)})
    return {"rows": rows, "changes": changes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="pfn")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--stability", action="store_true")
    parser.add_argument("--budgets", default="128:2:40,256:4:80,512:8:160",
                        help="eval_jets:slq_probes:trace_matvecs, each the double of the one before")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    timing, ctx = run_job(args.model, profile=not args.skip_profile)
    result = {"model": args.model, "threads": 1, "torch": torch.__version__, **timing,
              "machine": machine_info(load), "note": "machine shared with other jobs (see load averages)"}
    write_result(RESULTS / f"complexity_stage_{args.model}.json", result)
    print(result)
    if args.stability:
        budgets = [tuple(int(x) for x in b.split(":")) for b in args.budgets.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
        load = os.getloadavg()
        stab = stability(ctx, budgets, seeds)
        write_result(RESULTS / f"complexity_stability_{args.model}.json",
                     {"model": args.model, "n_params": timing["metrics"].get("hessian_n_params"),
                      "criterion": "relative change < 0.1 when eval_jets, slq_probes and trace_matvecs double",
                      **stab, "machine": machine_info(load)})
        print("| from (jets, probes, trace products) | to | seed | top eig | trace | curvature ratio | GC | max |")
        for c in stab["changes"]:
            print(f"| {tuple(c['from'])} | {tuple(c['to'])} | {c['seed']} | {c['hessian_top_eig']:.1%} | "
                  f"{c['hessian_trace']:.1%} | {c['hessian_goldstone_curvature_ratio']:.1%} | "
                  f"{c['geometric_complexity']:.1%} | {c['max']:.1%} |")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
