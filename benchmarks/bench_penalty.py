"""Cost of one training step with the soft symmetry penalty relative to an unpenalised step (PFN).

    python benchmarks/bench_penalty.py [--threads 1] [--batch 256] [--particles 64]

Writes benchmarks/results/penalty.json: seconds per step (median of repeats) for no penalty and for each
symmetry × form, and the ratio to the unpenalised step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import RESULTS, machine_info, write_result

from softsym.data.synthetic import synthetic_jets
from softsym.models import build_model
from softsym.penalties import SymmetryPenalty
from softsym.training.objective import penalised_objective


def step_seconds(model, batch, loss_fn, optimizer, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss, _ = loss_fn(model, batch, True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", default="small", choices=["small", "paper"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {"small": dict(phi_sizes=[64, 64], latent_dim=32, head_sizes=[64]),
             "paper": dict(phi_sizes=[100, 100], latent_dim=128, head_sizes=[100, 100])}[args.size]
    jets = synthetic_jets(args.batch // 2, max_particles=args.particles, seed=0)
    batch = jets.to_batch()
    model = build_model("pfn", n_features=8, n_classes=2, **sizes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    base = step_seconds(model, batch, penalised_objective(None), optimizer, args.repeats)
    results = {"none": {"seconds_per_step": base, "ratio": 1.0}}
    for symmetry in ("rotation", "boost", "lorentz"):
        for form in ("infinitesimal", "finite"):
            penalty = SymmetryPenalty(symmetry, form, weight=0.1)
            s = step_seconds(model, batch, penalised_objective(penalty), optimizer, args.repeats)
            results[f"{symmetry}_{form}"] = {"seconds_per_step": s, "ratio": s / base}
            print(f"{symmetry:9s} {form:13s} {s * 1e3:7.2f} ms/step  {s / base:5.2f}x")
        quarter = SymmetryPenalty(symmetry, "infinitesimal", weight=0.1, batch_fraction=0.25)
        s = step_seconds(model, batch, penalised_objective(quarter), optimizer, args.repeats)
        results[f"{symmetry}_infinitesimal_fraction0.25"] = {"seconds_per_step": s, "ratio": s / base}
        print(f"{symmetry:9s} {'inf. 1/4 batch':13s} {s * 1e3:7.2f} ms/step  {s / base:5.2f}x")
    print(f"{'none':23s} {base * 1e3:7.2f} ms/step")
    out = {"results": results, "batch": args.batch, "particles": args.particles, "threads": args.threads,
           "size": args.size, "n_params": model.n_params, "machine": machine_info(),
           "torch": torch.__version__, "command": " ".join(["python", *sys.argv])}
    write_result(RESULTS / "penalty.json", out)


if __name__ == "__main__":
    main()
