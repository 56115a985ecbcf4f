"""The strengths of the study's arms: test AUC and geometric complexity of the PFN and the MLP under the Lorentz
penalty, the GC regulariser and weight decay at several strengths, on the smoke sample (make data
EXPERIMENT=smoke), 8 epochs, 2 seeds (README, "The study").

    python benchmarks/study_strengths.py [pfn,mlp]   ->   benchmarks/results/study_strengths.json
"""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path

import torch

from softsym.analysis import geometric_complexity
from softsym.data.loaders import InMemoryLoader
from softsym.data.splits import load_splits
from softsym.data.stratify import sample_split
from softsym.models import MODELS
from softsym.penalties import PENALTIES
from softsym.training import FitConfig, classification_metrics, fit, predict
from softsym.training.objective import penalised_objective

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "data/cache/pythia/pythia-906e668d220e"  # the smoke sample's cache
SIZES = {"pfn": dict(phi_sizes=[64, 64], latent_dim=32, head_sizes=[64]),
         "mlp": dict(n_particles=32, hidden_sizes=[128, 64])}
ARMS = ([("none", 0.0, 1e-4)] + [("lorentz", lam, 1e-4) for lam in (0.003, 0.01, 0.03, 0.1, 1.0)]
        + [("gc", lam, 1e-4) for lam in (0.001, 0.003, 0.01, 0.03, 0.1)]
        + [("none", 0.0, wd) for wd in (0.1, 1.0, 3.0, 10.0)])


def main() -> None:
    torch.set_num_threads(1)
    models = sys.argv[1].split(",") if len(sys.argv) > 1 else ["pfn", "mlp"]
    data = load_splits(sorted(glob.glob(str(SMOKE / "*.root"))), max_particles=48, seed=0)
    n_features = 7 + len(data.scalar_names)
    eval_batches = list(InMemoryLoader(sample_split(data, "test", 128, 0), batch_size=128))
    rows = []
    for name in models:
        for penalty, lam, wd in ARMS:
            for seed in (0, 1):
                torch.manual_seed(seed)
                model = MODELS.build(name, n_features=n_features, n_classes=2, **SIZES[name])
                built = None if penalty == "none" else PENALTIES.build(penalty, weight=lam)
                start = time.perf_counter()
                fit(model, data.loader("train", batch_size=128, shuffle=True, seed=seed),
                    data.loader("val", batch_size=1024), penalised_objective(built),
                    FitConfig(epochs=8, weight_decay=wd, patience=3, seed=seed, progress=False))
                metrics = classification_metrics(*predict(model, data.loader("test", batch_size=1024)),
                                                 data.class_names)
                row = dict(model=name, penalty=penalty, lam=lam, wd=wd, seed=seed, auc=round(metrics["test_auc"], 4),
                           auc_se=round(metrics["test_auc_se"], 4),
                           gc=round(geometric_complexity(model, eval_batches), 4),
                           s=round(time.perf_counter() - start, 1))
                print(json.dumps(row), flush=True)
                rows.append(row)
    out = {"command": "python benchmarks/study_strengths.py " + ",".join(models), "rows": rows}
    (ROOT / "benchmarks/results/study_strengths.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
