"""Data sources: where the files of a run come from (``data.source``), by name.

Each source is a function of plain keyword arguments, named as the keys of its data config, that returns the
paths to read: ``files`` the configured ones, ``pythia`` the generated (or reused) shards.
``source_options`` picks a source's keywords out of a config mapping.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from softsym.data.errors import DataError
from softsym.registry import Registry

log = logging.getLogger(__name__)

DATA_SOURCES: Registry[list[str]] = Registry("data source")
_DEFAULT_DETECTOR: Mapping = MappingProxyType({})  # DetectorConfig's defaults


@DATA_SOURCES.register("files")
def files(*, paths: Sequence[str | os.PathLike] | None, progress: bool = False) -> list[str]:
    """The configured ``data.paths`` (files or globs, expanded by the reader)."""
    if not paths:
        raise DataError("data.paths is empty: give ROOT/Parquet files or globs, e.g. data.paths=[dir/*.root]")
    return list(paths)


@DATA_SOURCES.register("pythia")
def pythia(*, cache_dir: str | os.PathLike, n_jets_per_class: int, pt_min: float = 550.0, pt_max: float = 650.0,
           eta_max: float = 2.0, generation_seed: int = 0, n_workers: int = 1, jets_per_shard: int = 1000,
           detector: Mapping | None = _DEFAULT_DETECTOR, mpi: bool = True, fsr_alpha_s: float | None = None,
           progress: bool = False) -> list[str]:
    """Shards generated with Pythia 8 + FastJet under ``cache_dir``, reused when they exist.

    ``detector``: options of ``DetectorConfig`` (its defaults when not given; None or ``enabled: false``:
    generator-level particles). ``mpi``: multi-parton interactions; ``fsr_alpha_s``: the final-state shower's
    alpha_s (None: the tune's). Both at their defaults give the shards (and cache names) of earlier versions.
    """
    from softsym.data.pythia import generate_shards

    result = generate_shards(
        out_dir=cache_dir, n_jets_per_class=n_jets_per_class, pt_min=pt_min, pt_max=pt_max, eta_max=eta_max,
        seed=generation_seed, n_workers=n_workers, jets_per_shard=jets_per_shard,
        detector=dict(detector) if detector is not None else None, mpi=mpi, fsr_alpha_s=fsr_alpha_s,
        progress=progress,
    )
    log.info("pythia shards: %d generated, %d reused from %s", result.n_generated_shards,
             result.n_reused_shards, cache_dir)
    return [str(p) for p in result.paths]


def source_options(name: str, options: Mapping) -> dict:
    """The entries of ``options`` (e.g. the data config) that source ``name`` takes as keyword arguments."""
    parameters = inspect.signature(DATA_SOURCES.get(name)).parameters
    return {key: options[key] for key in parameters if key in options}
