"""Cost of one PFN training step with the soft symmetry penalty relative to an unpenalised step.

    python benchmarks/bench_penalty.py [--rounds 5] [--threads 1] [--batch 256] [--particles 64]
                                       [--size small|paper] [--allocator glibc|steady]

Every configuration trains in its own process, as a real job would: glibc's heap then starts from the
same state for each, and the page faults one configuration's allocations cause cannot bleed into another's
timing (interleaved in one process, they moved the unpenalised step by 20%). The rounds rotate the order;
a configuration's ratio is the median over rounds of its step time over the unpenalised step of the same
round. ``--allocator steady`` sets glibc's mmap and trim thresholds so that freed memory is kept, which
takes the page faults (and most of the run-to-run noise) out of every configuration.

Configurations: no penalty; rotation, boost and lorentz in the infinitesimal form (the hand-written exact
path for ReLU PFNs, ``softsym.penalties.deep_sets``), the same through generic autograd double backward
(what every other model uses), the finite form, and the infinitesimal form on a quarter of each batch.
Writes benchmarks/results/penalty.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SIZES = {"small": dict(phi_sizes=[64, 64], latent_dim=32, head_sizes=[64]),
         "paper": dict(phi_sizes=[100, 100], latent_dim=128, head_sizes=[100, 100])}
STEADY_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def configurations() -> list[str]:
    names = ["none"]
    for symmetry in ("rotation", "boost", "lorentz"):
        names += [f"{symmetry}_infinitesimal", f"{symmetry}_infinitesimal_autograd", f"{symmetry}_finite",
                  f"{symmetry}_infinitesimal_fraction0.25"]
    return names


def loss_function(name: str):
    from softsym.penalties import SymmetryPenalty, generator_derivatives
    from softsym.physics.symmetries import symmetry_generators
    from softsym.training.metrics import task_loss
    from softsym.training.objective import penalised_objective

    if name == "none":
        return penalised_objective(None)
    symmetry, form, *variant = name.split("_")
    if variant == ["autograd"]:  # the generic path, forced: reverse-over-reverse through features and model
        def loss_fn(model, batch, training):
            generators, _ = symmetry_generators(symmetry, batch.p4, batch.mask)
            logits, derivatives = generator_derivatives(model, batch, generators)
            return task_loss(logits, batch.labels) + 0.1 * derivatives.square().sum((0, 2)).mean(), {}
        return loss_fn
    fraction = float(variant[0].removeprefix("fraction")) if variant else 1.0
    return penalised_objective(SymmetryPenalty(symmetry, form, weight=0.1, batch_fraction=fraction))


def worker(args: argparse.Namespace) -> None:
    """Time ``args.steps`` training steps of one configuration; print seconds and page faults per step."""
    import torch

    from softsym.data.synthetic import synthetic_jets
    from softsym.models import MODELS

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = synthetic_jets(args.batch // 2, max_particles=args.particles, seed=0).to_batch()
    model = MODELS.build("pfn", n_features=8, n_classes=2, **SIZES[args.size])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = loss_function(args.worker)
    times, faults = [], []
    for _ in range(args.warmup + args.steps):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        loss, _ = loss_fn(model, batch, True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(json.dumps({"seconds_per_step": statistics.median(times[args.warmup:]),
                      "page_faults_per_step": statistics.median(faults[args.warmup:]), "n_params": model.n_params}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--size", default="small", choices=sorted(SIZES))
    parser.add_argument("--allocator", default="glibc", choices=["glibc", "steady"])
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all); 'none' is always run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from common import RESULTS, machine_info, write_result

    names = configurations() if not args.only else ["none", *[n for n in args.only if n != "none"]]
    env = {**os.environ, **(STEADY_ALLOCATOR if args.allocator == "steady" else {})}
    passthrough = [f"--{k}={getattr(args, k)}" for k in ("steps", "warmup", "threads", "batch", "particles", "size")]
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = subprocess.run([sys.executable, __file__, f"--worker={name}", *passthrough], env=env,
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = [run["seconds_per_step"] for run in runs["none"]]
    results = {}
    for name, rs in runs.items():
        seconds = [run["seconds_per_step"] for run in rs]
        results[name] = {"seconds_per_step": statistics.median(seconds),
                         "ratio": statistics.median(s / b for s, b in zip(seconds, base, strict=True)),
                         "ratio_per_round": [round(s / b, 3) for s, b in zip(seconds, base, strict=True)],
                         "page_faults_per_step": statistics.median(run["page_faults_per_step"] for run in rs)}
        print(f"{name:40s} {results[name]['seconds_per_step'] * 1e3:7.2f} ms/step  {results[name]['ratio']:5.2f}x"
              f"  (rounds {results[name]['ratio_per_round']})")
    out = {"results": results, "rounds": args.rounds, "steps": args.steps, "batch": args.batch,
           "particles": args.particles, "threads": args.threads, "size": args.size, "allocator": args.allocator,
           "n_params": runs["none"][0]["n_params"], "machine": machine_info(load_before),
           "command": " ".join(["python", *sys.argv])}
    suffix = "" if (args.size, args.allocator) == ("small", "glibc") else f"_{args.size}_{args.allocator}"
    write_result(RESULTS / f"penalty{suffix}.json", out)


if __name__ == "__main__":
    main()
