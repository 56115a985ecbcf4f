"""Config → the typed objects the stages hand to the library, each built in one place: the data splits,
the evaluation sets, the fit settings, the Hessian options, the training penalty and the robustness scans.
Stages share these builders instead of importing each other."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from softsym.analysis import HessianOptions
from softsym.data.errors import DataError
from softsym.data.eval_sets import load_eval_sets
from softsym.data.jets import JetArrays
from softsym.data.sources import DATA_SOURCES, source_options
from softsym.data.splits import JetSplits, StreamingSplits, load_splits
from softsym.data.stream_plan import plan_stream, should_stream
from softsym.penalties import PENALTIES, Penalty
from softsym.robustness import PerturbationScan, scans_from_config
from softsym.training import FitConfig

log = logging.getLogger(__name__)

_FIT_FIELDS = {f.name for f in dataclasses.fields(FitConfig)} - {"seed", "progress"}
_HESSIAN_FIELDS = {f.name for f in dataclasses.fields(HessianOptions)} - {"seed", "progress", "density"}
_OPERATOR_KEYS = ("dtype", "hvp", "cache_graph")


def load_dataset(cfg: DictConfig, *, progress: bool) -> JetSplits:
    """The splits of the files of ``data.source``: in memory by default; streamed from the files when
    ``data.stream`` says so (``auto``: when the selection would exceed ``data.memory_budget_gb``)."""
    data = cfg.data
    settings = OmegaConf.to_container(data, resolve=True)
    paths = DATA_SOURCES.build(data.source, **source_options(data.source, settings), progress=progress)
    options = dict(tree=data.tree, branches=settings["branches"] or None, classes=list(data.classes),
                   max_particles=data.max_particles, max_jets_per_class=data.max_jets_per_class,
                   fractions=list(data.splits), seed=cfg.seed, progress=progress,
                   unphysical=settings.get("unphysical", "error"),
                   unphysical_tolerance=settings.get("unphysical_tolerance", 1e-4))
    stream = should_stream(paths, stream=data.stream, memory_budget_gb=data.memory_budget_gb, tree=data.tree,
                           max_particles=data.max_particles, n_classes=len(data.classes),
                           max_jets_per_class=data.max_jets_per_class)
    max_train_jets = settings.get("max_train_jets")
    if stream:
        if max_train_jets is not None:
            raise DataError("data.max_train_jets needs the jets in memory: set data.stream=false (or lower "
                            "data.max_jets_per_class) to limit the training split")
        log.info("streaming the data from %d files (data.stream=%s)", len(paths), data.stream)
        return StreamingSplits(plan_stream(paths, **options), loader_workers=data.loader_workers)
    return load_splits(paths, **options, observers=list(data.get("observers") or ()),
                       max_train_jets=max_train_jets)


def eval_sets(ctx) -> dict[str, JetArrays]:
    """The job's evaluation sets (``data.eval_sets``), generated or read once per job and kept in
    ``ctx.outputs``."""
    if "eval_sets" not in ctx.outputs:
        settings = OmegaConf.to_container(ctx.cfg.data, resolve=True)
        ctx.outputs["eval_sets"] = load_eval_sets(settings, scalar_names=ctx.dataset().scalar_names,
                                                  progress=ctx.progress)
    return ctx.outputs["eval_sets"]


def study_tags(cfg: DictConfig) -> dict[str, str]:
    """Which arm of a study a job is: ``group`` = baseline | symmetry | control, and ``control`` = none |
    gc | weight_decay (the controls are regularisers without a symmetry). A job without a penalty and with a
    ``train.weight_decay`` other than the baselines' ``train.baseline_weight_decay`` is the weight-decay
    control."""
    name, weight = cfg.penalty.name, float(cfg.penalty["lambda"])
    default_weight_decay = float(cfg.train.get("baseline_weight_decay", cfg.train.weight_decay))
    if name == "gc" and weight > 0:
        return {"group": "control", "control": "gc"}
    if name in ("none", "gc") or weight == 0:
        if float(cfg.train.weight_decay) != default_weight_decay:
            return {"group": "control", "control": "weight_decay"}
        return {"group": "baseline", "control": "none"}
    return {"group": "symmetry", "control": "none"}


def fit_config(section: Mapping[str, Any] | None = None, *, seed: int, progress: bool, **overrides: Any) -> FitConfig:
    """``FitConfig`` from a config section holding (some of) its fields (``train``, ``distill``); other keys
    of the section are not the fit loop's and are left alone, missing fields keep their defaults, and
    ``overrides`` replace single fields."""
    values = {k: section[k] for k in _FIT_FIELDS if section is not None and k in section}
    return FitConfig(**{**values, **overrides}, seed=seed, progress=progress)


def hessian_options(cfg: DictConfig, *, progress: bool) -> HessianOptions:
    """What ``analyze_hessian`` computes, from ``complexity.hessian`` and the run's ``seed``."""
    h = cfg.complexity.hessian
    unknown = set(h) - _HESSIAN_FIELDS - set(_OPERATOR_KEYS)
    if unknown:
        raise ValueError(f"complexity.hessian has unknown keys {sorted(unknown)}; expected "
                         f"{sorted(_HESSIAN_FIELDS | set(_OPERATOR_KEYS))}")
    return HessianOptions(**{k: h[k] for k in _HESSIAN_FIELDS if k in h}, seed=cfg.seed, progress=progress)


def hessian_operator_options(cfg: DictConfig) -> dict[str, Any]:
    """How the Hessian-vector products are computed (``HessianOperator``'s keywords)."""
    h = cfg.complexity.hessian
    return {"dtype": getattr(torch, h.dtype), "hvp": h.hvp, "cache_graph": h.cache_graph}


def penalty(penalty_cfg: DictConfig) -> Penalty | None:
    """The training penalty of a ``penalty`` config: ``lambda`` is its ``weight``; every other key but
    ``name`` is an option of the penalty. None for ``none``."""
    options = {k: v for k, v in OmegaConf.to_container(penalty_cfg, resolve=True).items()
               if k not in ("name", "lambda")}
    return PENALTIES.build(penalty_cfg.name, weight=float(penalty_cfg["lambda"]), **options)


def measured_symmetry(penalty_cfg: DictConfig) -> str:
    """The symmetry whose violation ``symmetry_violation`` reports: the one the penalty imposes (its name),
    or, for penalties that impose none (``none``, ``gc``), their ``symmetry`` key."""
    return penalty_cfg.get("symmetry") or penalty_cfg.name


def perturbation_scans(cfg: DictConfig, names: Iterable[str] | None = None) -> list[PerturbationScan]:
    """The robustness scans of ``robustness.perturbations``; only those in ``names`` when given."""
    scans = scans_from_config(OmegaConf.to_container(cfg.robustness.perturbations, resolve=True),
                              jet_radius=cfg.robustness.get("jet_radius"))
    if names is None:
        return scans
    keep = set(names)
    return [s for s in scans if s.name in keep]
