"""Data stage: jets from ROOT files (or generated with Pythia 8 when data=pythia), split and summarised."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from softsym.data.dataset import DatasetSplits, StreamingSplits, load_splits
from softsym.data.errors import DataError
from softsym.data.streaming import plan_stream, should_stream

log = logging.getLogger(__name__)


def resolve_paths(cfg: DictConfig, progress: bool) -> list[str]:
    """Files to read: the configured ``data.paths``, or the generated shards for ``data=pythia``."""
    data = cfg.data
    if data.source == "pythia":
        from softsym.data.generator import generate_shards

        detector = OmegaConf.to_container(data.detector, resolve=True)
        result = generate_shards(
            out_dir=data.cache_dir, n_jets_per_class=data.n_jets_per_class, pt_min=data.pt_min,
            pt_max=data.pt_max, eta_max=data.eta_max, seed=data.generation_seed, n_workers=data.n_workers,
            jets_per_shard=data.jets_per_shard, detector=detector, progress=progress,
        )
        log.info("pythia shards: %d generated, %d reused from %s", result.n_generated_shards,
                 result.n_reused_shards, data.cache_dir)
        return [str(p) for p in result.paths]
    if data.source == "files":
        if not data.paths:
            raise DataError("data.paths is empty: give ROOT/Parquet files or globs, e.g. data.paths=[dir/*.root]")
        return list(data.paths)
    raise DataError(f"data.source {data.source!r} is unknown; expected 'pythia' or 'files'")


def load_dataset(cfg: DictConfig, *, progress: bool) -> DatasetSplits | StreamingSplits:
    """In memory by default; streamed from the files when ``data.stream`` says so (``auto``: when the
    selection would exceed ``data.memory_budget_gb``)."""
    data = cfg.data
    branches = OmegaConf.to_container(data.branches, resolve=True) if data.branches else None
    paths = resolve_paths(cfg, progress)
    options = dict(tree=data.tree, branches=branches, classes=list(data.classes), max_particles=data.max_particles,
                   max_jets_per_class=data.max_jets_per_class, fractions=list(data.splits), seed=cfg.seed,
                   progress=progress)
    stream = should_stream(paths, stream=data.stream, memory_budget_gb=data.memory_budget_gb, tree=data.tree,
                           max_particles=data.max_particles, n_classes=len(data.classes),
                           max_jets_per_class=data.max_jets_per_class)
    if stream:
        log.info("streaming the data from %d files (data.stream=%s)", len(paths), data.stream)
        return StreamingSplits(plan_stream(paths, **options), loader_workers=data.loader_workers)
    return load_splits(paths, **options)


def run(cfg: DictConfig, ctx) -> None:
    dataset = ctx.dataset()
    ctx.tracker.log_metrics(dataset.metrics())
    ctx.tracker.set_tags({"classes": ",".join(dataset.class_names)})
    log.info("data: %s", {k: round(v, 4) for k, v in dataset.metrics().items()})
