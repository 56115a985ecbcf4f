"""The table of a job's options: option → type, range or choices (``SCHEMA``), and the ``Spec`` builders it
is written with. Names chosen from a registry (stages, data sources, models, penalties, symmetries,
perturbations) are read from it when first checked. ``softsym.config.check`` applies the table."""

from __future__ import annotations

import difflib
import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """What one option takes: ``accepts(value)`` and the words for it; ``nullable``: null is allowed too.
    ``words`` may be a function (choices read from a registry, imported on first use)."""
    words: str | Callable[[], str]
    accepts: Callable[[Any], bool]
    nullable: bool = False
    choices: Callable[[], Sequence[Any]] | None = None

    @property
    def expected(self) -> str:
        return self.words() if callable(self.words) else self.words

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else f"expected {self.expected}, not null"
        if self.accepts(value):
            return None
        expected = f"{self.expected} or null" if self.nullable else self.expected
        if self.choices is not None and isinstance(value, str):
            close = difflib.get_close_matches(value, [str(c) for c in self.choices()], n=3)
            if close:
                return f"expected {expected}; did you mean {' or '.join(close)}?"
        return f"expected {expected}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> tuple[Callable, str]:
    def inside(v: float) -> bool:
        return ((low is None or (v > low if low_open else v >= low))
                and (high is None or (v < high if high_open else v <= high)))
    words = []
    if low is not None:
        words.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        words.append(f"{'<' if high_open else '<='} {high:g}")
    return inside, " and ".join(words)


def integer(low: int | None = None, high: int | None = None, *, nullable: bool = False) -> Spec:
    inside, words = _bounds(low, high, False, False)
    return Spec(f"an integer {words}".strip(), lambda v: _is_int(v) and inside(v), nullable)


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, nullable: bool = False) -> Spec:
    inside, words = _bounds(low, high, low_open, high_open)
    return Spec(f"a number {words}".strip(), lambda v: _is_number(v) and inside(v), nullable)


def flag(*, also: tuple[str, ...] = ()) -> Spec:
    words = "true or false" + "".join(f" or {a}" for a in also)
    return Spec(words, lambda v: isinstance(v, bool) or v in also)


def text(*, nullable: bool = False) -> Spec:
    return Spec("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()), nullable)


def one_of(choices: Sequence[Any] | Callable[[], Sequence[Any]], *, nullable: bool = False) -> Spec:
    names = choices if callable(choices) else (lambda: list(choices))
    return Spec(lambda: f"one of {list(names())}",
                lambda v: isinstance(v, (str, int)) and not isinstance(v, bool) and v in names(), nullable, names)


def list_of(item: Spec, *, min_len: int = 1, nullable: bool = False) -> Spec:
    size = {0: "a list", 1: "a non-empty list"}.get(min_len, f"a list of at least {min_len}")
    def accepts(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and len(v) >= min_len and all(item.problem(x) is None for x in v)
    return Spec(lambda: f"{size}, each {item.expected}", accepts, nullable)


def mapping(*, nullable: bool = False) -> Spec:
    return Spec("a mapping", lambda v: isinstance(v, Mapping), nullable)


def _registry(module: str, name: str) -> Callable[[], list[str]]:
    def names() -> list[str]:
        return importlib.import_module(module).__dict__[name].names()
    return names


STAGE_NAMES = _registry("softsym.stages", "STAGES")
SOURCE_NAMES = _registry("softsym.data.sources", "DATA_SOURCES")
MODEL_NAMES = _registry("softsym.models", "MODELS")
PENALTY_NAMES = _registry("softsym.penalties", "PENALTIES")
SYMMETRY_NAMES = _registry("softsym.physics.symmetries", "SYMMETRIES")
PERTURBATION_NAMES = _registry("softsym.robustness.perturbations", "PERTURBATIONS")
DEVICE = Spec("auto, cpu, cuda, cuda:<index> or mps",
              lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None)

SCHEMA: dict[str, Spec] = {
    "stages": list_of(one_of(STAGE_NAMES)),
    "seed": integer(0),
    "threads": integer(1, nullable=True),
    "progress": flag(also=("auto",)),
    "rerun": flag(),
    "predictions.format": one_of(("parquet", "root", "none")),
    "paths.root": text(), "paths.cache": text(), "paths.checkpoints": text(),
    "mlflow.tracking_uri": text(), "mlflow.experiment_name": text(), "mlflow.connect_timeout": number(0, low_open=True),
    "mlflow.max_job_hours": number(0, low_open=True, nullable=True),
    # data: every source
    "data.source": one_of(SOURCE_NAMES),
    "data.paths": list_of(text(), nullable=True),
    "data.tree": text(),
    "data.branches": mapping(nullable=True),
    "data.classes": list_of(text(), min_len=2),
    "data.max_particles": integer(1),
    "data.max_jets_per_class": integer(1, nullable=True),
    "data.max_train_jets": integer(1, nullable=True),
    "data.observers": list_of(text(), min_len=0),
    "data.splits": list_of(number(0, 1), min_len=3),
    "data.stream": flag(also=("auto",)),
    "data.memory_budget_gb": number(0, low_open=True),
    "data.loader_workers": integer(0),
    "data.unphysical": one_of(("error", "drop", "keep")),
    "data.unphysical_tolerance": number(0),
    "data.eval_sets": mapping(nullable=True),
    # data: pythia
    "data.n_jets_per_class": integer(1), "data.generation_seed": integer(0), "data.pt_min": number(0),
    "data.pt_max": number(0, low_open=True), "data.eta_max": number(0, low_open=True),
    "data.jets_per_shard": integer(1), "data.n_workers": integer(1), "data.cache_dir": text(),
    "data.detector": mapping(nullable=True),
    "data.mpi": flag(), "data.fsr_alpha_s": number(0, low_open=True, nullable=True),
    "data.eval_jets_per_class": integer(1, nullable=True),
    # model
    "model.name": one_of(MODEL_NAMES),
    "model.size": text(),
    "model.sizes": mapping(),
    "model.inputs": one_of(("features", "p4", "p4_jet")),
    "model.p4_scale": number(0, low_open=True),
    # penalty
    "penalty.name": one_of(PENALTY_NAMES),
    "penalty.lambda": number(0),
    "penalty.form": one_of(("infinitesimal", "finite")),
    "penalty.symmetry": one_of(SYMMETRY_NAMES),
    "penalty.max_angle": number(0, low_open=True),
    "penalty.max_rapidity": number(0, low_open=True),
    "penalty.batch_fraction": number(0, 1, low_open=True),
    # train
    "train.epochs": integer(1),
    "train.batch_size": integer(1), "train.eval_batch_size": integer(1),
    "train.lr": number(0, low_open=True), "train.weight_decay": number(0),
    "train.warmup_epochs": integer(0), "train.patience": integer(1),
    "train.grad_clip": number(0, nullable=True),
    "train.device": DEVICE,
    "train.strategy": one_of(("single", "ddp")),
    "train.checkpoint": text(nullable=True),
    "train.resume": flag(),
    # complexity
    "complexity.eval_jets": integer(1), "complexity.batch_size": integer(1), "complexity.progress": flag(),
    "complexity.hessian.method": one_of(("auto", "exact", "lanczos")),
    "complexity.hessian.exact_max_params": integer(0), "complexity.hessian.k": integer(1),
    "complexity.hessian.k_bottom": integer(0), "complexity.hessian.tol": number(0, low_open=True),
    "complexity.hessian.max_iter": integer(1, nullable=True),
    "complexity.hessian.trace_method": one_of(("hutchpp", "xtrace", "hutchinson")),
    "complexity.hessian.trace_matvecs": integer(1), "complexity.hessian.slq_probes": integer(1),
    "complexity.hessian.slq_steps": integer(1), "complexity.hessian.near_zero_eps": number(0, low_open=True),
    "complexity.hessian.eff_dim_z": number(0, low_open=True),
    "complexity.hessian.near_zero_abs": number(0, low_open=True),
    "complexity.hessian.dtype": one_of(("float32", "float64")),
    "complexity.hessian.hvp": one_of(("double_backward", "fwd_rev")),
    "complexity.hessian.cache_graph": flag(),
    "complexity.goldstone.enabled": flag(), "complexity.goldstone.symmetry": one_of(SYMMETRY_NAMES, nullable=True),
    "complexity.goldstone.layer": text(nullable=True), "complexity.goldstone.quadrature_steps": integer(1),
    "complexity.goldstone.abs_threshold": number(0, low_open=True),
    "complexity.goldstone.profile_t_max": number(0, low_open=True),
    "complexity.goldstone.profile_points": integer(2), "complexity.goldstone.profile_random": integer(0),
    "complexity.gc.enabled": flag(), "complexity.calibration.enabled": flag(),
    "complexity.compress.sparsities": list_of(number(0, 1, high_open=True)),
    "complexity.compress.bits": list_of(integer(1, 32)),
    "complexity.compress.per_channel": flag(), "complexity.compress.combine": flag(),
    "complexity.compress.tolerance": number(0), "complexity.compress.finetune_epochs": integer(0),
    "complexity.compress.balance": flag(),
    # robustness
    "robustness.seed": integer(0), "robustness.batch_size": integer(1),
    "robustness.adversarial_eps": list_of(number(0)),
    "robustness.perturbations": mapping(),
    # distill
    "distill.student.name": one_of(MODEL_NAMES), "distill.student.sizes": mapping(),
    "distill.seed": integer(0), "distill.temperature": number(0, low_open=True), "distill.alpha": number(0, 1),
    "distill.epochs": integer(1), "distill.batch_size": integer(1), "distill.lr": number(0, low_open=True),
    "distill.weight_decay": number(0), "distill.patience": integer(1), "distill.grad_clip": number(0, nullable=True),
    "distill.eval_every": integer(1), "distill.robustness": list_of(one_of(PERTURBATION_NAMES), min_len=0),
    "distill.penalty": mapping(nullable=True),
}
