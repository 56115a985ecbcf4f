"""Model zoo throughput: parameters and jets/s for training and inference, per model, at one config size.

    python benchmarks/bench_models.py [--size small] [--threads 2] [--device cpu] [--steps 10]

On synthetic jets padded to ``--particles`` (64) slots (``synthetic_jets``: 1/3 to all slots real), per model:
- ``train``: one optimisation step on a batch of ``--batch-size`` (256): features from p4, forward, BCE,
  backward, AdamW step;
- ``train_lorentz``: the same with the ``penalty=lorentz`` infinitesimal penalty (λ = 1) as the train stage
  computes it;
- ``inference``: forward under ``no_grad`` in eval mode on batches of ``--eval-batch-size`` (512).
Each figure is ``batch / step time`` of the best and of the median of ``--steps`` timed steps after 2 warm-up
steps; the steps of all models run in turn, so a burst of load elsewhere slows them alike.
Also times the transformer's explicit attention against ``nn.MultiheadAttention`` with ``need_weights=True``
(the two attention forms with forward-mode AD on CPU). The load average before and after is recorded: on a
shared machine the figures are only as good as the quiet it had.
Writes benchmarks/results/models.json (or ``--output``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

from softsym.data.synthetic import synthetic_jets
from softsym.models import MODELS, logits_from_p4
from softsym.models.transformer import MaskedAttention
from softsym.penalties import SymmetryPenalty
from softsym.physics import N_KINEMATIC
from softsym.training.metrics import task_loss

ROOT_DIR = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT_DIR / "configs" / "model"
RESULT = ROOT_DIR / "benchmarks" / "results" / "models.json"
MODEL_NAMES = ("pfn", "mlp", "particlenet", "transformer", "lorentz_invariant")
WARMUP = 2


def timed(step, device: torch.device) -> float:
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(steps: dict, n_steps: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each of ``steps`` (label -> callable), run in turn ``WARMUP + n_steps`` times: interleaving
    makes a busy machine slow every case alike instead of whichever ran during a burst."""
    times: dict[str, list[float]] = {label: [] for label in steps}
    for i in range(WARMUP + n_steps):
        for label, step in steps.items():
            elapsed = timed(step, device)
            if i >= WARMUP:
                times[label].append(elapsed)
    return times


def model_steps(name: str, size: str, jets, eval_jets) -> tuple[int, dict]:
    """Parameter count and the three timed steps (train, train with the lorentz penalty, inference)."""
    config = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    torch.manual_seed(0)
    model = MODELS.build(name, n_features=N_KINEMATIC + jets.scalars.shape[-1], n_classes=2,
                        **config["sizes"][size]).to(jets.p4.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    penalty = SymmetryPenalty("lorentz", "infinitesimal", weight=1.0)

    def train_step(with_penalty: bool) -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        if with_penalty:
            logits, value = penalty(model, jets)
            loss = task_loss(logits, jets.labels) + penalty.weight * value
        else:
            loss = task_loss(logits_from_p4(model, jets.p4, jets.mask, jets.scalars), jets.labels)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def inference_step() -> None:
        model.eval()
        logits_from_p4(model, eval_jets.p4, eval_jets.mask, eval_jets.scalars)

    return model.n_params, {"train": lambda: train_step(False), "train_lorentz": lambda: train_step(True),
                            "inference": inference_step}


def rates(batch_size: int, times: list[float]) -> dict[str, float]:
    return {"jets_per_s": round(batch_size / statistics.median(times), 1),
            "best_jets_per_s": round(batch_size / min(times), 1)}


def bench_models(names: list[str], size: str, jets, eval_jets, n_steps: int, device: torch.device) -> dict:
    steps, n_params = {}, {}
    for name in names:
        n_params[name], per_model = model_steps(name, size, jets, eval_jets)
        steps.update({(name, kind): step for kind, step in per_model.items()})
    times = interleaved_times(steps, n_steps, device)
    return {name: {"n_params": n_params[name],
                   **{kind: rates(len(eval_jets) if kind == "inference" else len(jets), times[(name, kind)])
                      for kind in ("train", "train_lorentz", "inference")}}
            for name in names}


def bench_attention(config: dict, batch_size: int, n_particles: int, n_steps: int, device: torch.device) -> dict:
    """Median seconds per (forward + backward) and per (jvp + backward) of one attention layer in two forms."""
    dim, n_heads = config["embed_dim"], config["n_heads"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, n_particles, dim, generator=g).to(device)
    mask = (torch.rand(batch_size, n_particles, generator=g) < 0.67).to(device)
    mask[:, 0] = True
    bias = torch.randn(batch_size, n_heads, n_particles, n_particles, generator=g).to(device)
    explicit = MaskedAttention(dim, n_heads).to(device)
    torch_mha = torch.nn.MultiheadAttention(dim, n_heads, batch_first=True).to(device)

    def with_explicit(x: torch.Tensor) -> torch.Tensor:
        return explicit(x, x, mask, bias)

    def with_torch_mha(x: torch.Tensor) -> torch.Tensor:
        attn_mask = bias.masked_fill(~mask[:, None, None, :], torch.finfo(x.dtype).min).flatten(0, 1)
        return torch_mha(x, x, x, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)[0]

    def forward_backward(f) -> None:
        f(x).sum().backward()

    def jvp_backward(f) -> None:
        out, tangent = torch.func.jvp(f, (x,), (torch.ones_like(x),))
        (out.sum() + tangent.pow(2).sum()).backward()

    times = interleaved_times({(form, mode): (lambda run=run, f=f: run(f))
                               for form, f in (("explicit", with_explicit),
                                               ("nn_multihead_need_weights", with_torch_mha))
                               for mode, run in (("forward_backward_s", forward_backward),
                                                 ("jvp_backward_s", jvp_backward))}, n_steps, device)
    result: dict = {"shape": {"batch": batch_size, "particles": n_particles, "dim": dim, "heads": n_heads}}
    for (form, mode), ts in times.items():
        result.setdefault(form, {})[mode] = round(statistics.median(ts), 5)
    return result


def markdown_table(results: dict, size: str) -> str:
    """Jets/s as 'best step (median)': on a shared machine the best step repeats from run to run, the median
    follows whatever else is running."""
    kinds = ("train", "train_lorentz", "inference")
    lines = [f"| model (`{size}`) | params | train jets/s | train + lorentz penalty jets/s | inference jets/s |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        cells = [f"{r[k]['best_jets_per_s']:,.0f} ({r[k]['jets_per_s']:,.0f})" for k in kinds]
        lines.append(f"| {name} | {r['n_params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    jets = synthetic_jets(args.batch_size // 2, max_particles=args.particles, seed=0).to_batch(device)
    eval_jets = synthetic_jets(args.eval_batch_size // 2, max_particles=args.particles, seed=1).to_batch(device)
    load_before = os.getloadavg()
    results = bench_models(args.models, args.size, jets, eval_jets, args.steps, device)
    for name, figures in results.items():
        print(f"{name}: {figures}", flush=True)
    transformer_config = yaml.safe_load((CONFIG_DIR / "transformer.yaml").read_text())["sizes"][args.size]
    attention = bench_attention(transformer_config, args.batch_size, args.particles, args.steps, device)
    print(f"attention: {attention}", flush=True)

    output = {
        "results": results,
        "attention": attention,
        "size": args.size,
        "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "particles": args.particles,
        "mean_real_particles": round(float(jets.mask.sum(1).float().mean()), 1),
        "steps": args.steps,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpus": os.cpu_count(), "threads": args.threads,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "command": " ".join(["python", "benchmarks/bench_models.py", *sys.argv[1:]]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(output, indent=2) + "\n")
    os.replace(tmp, args.output)
    print(markdown_table(results, args.size))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
