"""Named evaluation sets (``data.eval_sets``): jets from another setting of the training data's source (another
pT window, another simulation, another detector) or from other files, on which every evaluating stage
measures the trained models beside the test split.

Each set is a mapping of overrides on top of the training data's settings (mappings such as ``detector`` are
merged key by key). ``paths`` alone means the ``files`` source; ``source`` names one explicitly. A generated
set gets a generation seed of its own, derived from the training data's and the set's name, so its jets are
independent of the training jets and of every other set (an explicit ``generation_seed`` wins), and
``eval_jets_per_class`` jets per class when the data config sets it and the set does not say otherwise.
Generated sets are cached like the training data. A set is used whole, or as a seeded, stratified sample of
``max_jets`` jets.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from softsym.data.errors import DataError
from softsym.data.jets import JetArrays
from softsym.data.reader import read_jets
from softsym.data.sources import DATA_SOURCES, source_options
from softsym.data.stratify import stratified_subsample

EVAL_SAMPLE_STREAM = 3
# Keys of an evaluation set beside its source's options: how its files are read and how many jets are used.
READ_KEYS = ("source", "tree", "branches", "max_jets_per_class", "max_jets", "unphysical", "unphysical_tolerance")
_READ_OPTIONS = ("unphysical", "unphysical_tolerance")  # read_jets options shared with the training data


def eval_set_seed(generation_seed: int, name: str) -> int:
    """The generation seed of evaluation set ``name``: a hash of (the training data's seed, the name), so
    every set has its own random streams and none repeats the training data's."""
    digest = hashlib.blake2b(f"{int(generation_seed)}/eval_set/{name}".encode(), digest_size=8).digest()
    seed = int.from_bytes(digest, "little") % (2**31 - 1) + 1
    return seed if seed != generation_seed else seed + 1


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def eval_set_settings(data: Mapping[str, Any], name: str,
                      overrides: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(source name, settings) of evaluation set ``name`` from the training data's settings ``data``."""
    overrides = dict(overrides or {})
    source = overrides.get("source") or ("files" if "paths" in overrides else data["source"])
    parameters = inspect.signature(DATA_SOURCES.get(source)).parameters
    unknown = sorted(set(overrides) - set(parameters) - set(READ_KEYS))
    if unknown:
        raise DataError(f"data.eval_sets.{name}: unknown option(s) {unknown}; expected options of the "
                        f"{source!r} source {sorted(set(parameters) - {'progress'})} or {list(READ_KEYS)}")
    settings = _merged({k: v for k, v in data.items() if k != "eval_sets"}, overrides)
    settings["source"] = source
    if source == "pythia" and "generation_seed" not in overrides:
        settings["generation_seed"] = eval_set_seed(data.get("generation_seed") or 0, name)
    if source == "pythia" and "n_jets_per_class" not in overrides and data.get("eval_jets_per_class"):
        settings["n_jets_per_class"] = data["eval_jets_per_class"]
    missing = [p.name for p in parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in settings]
    if missing:
        raise DataError(f"data.eval_sets.{name}: the {source!r} source needs {missing}")
    return source, settings


def eval_set_paths(data: Mapping[str, Any], name: str, overrides: Mapping[str, Any] | None, *,
                   progress: bool = False) -> tuple[list[str], dict[str, Any]]:
    """The files of evaluation set ``name`` (generated or reused for a generated set) and its settings."""
    source, settings = eval_set_settings(data, name, overrides)
    paths = DATA_SOURCES.build(source, **source_options(source, settings), progress=progress)
    return paths, settings


def read_eval_set(paths: Sequence[str], *, tree: str = "tree", branches: Mapping[str, str] | None = None,
                  classes: Sequence[str] = ("QCD", "Tbqq"), max_particles: int = 128,
                  max_jets_per_class: int | None = None, max_jets: int | None = None,
                  scalar_names: Sequence[str] | None = None, observers: Sequence[str] = (),
                  progress: bool = False, name: str = "", **read_options: Any) -> JetArrays:
    """Every selected jet of ``paths``, or a seeded sample of ``max_jets`` in the class proportions.

    ``scalar_names``: the per-particle scalars the model was trained with; a set whose files lack one of them
    is a DataError (the model could not read its jets). ``read_options``: more options of ``read_jets``
    (how unphysical particles are treated, as for the training data)."""
    options = dict(read_options) if scalar_names is None else {**read_options, "scalar_branches": tuple(scalar_names)}
    arrays, _ = read_jets(list(paths), tree=tree, branches=dict(branches) if branches else None,
                          classes=tuple(classes), max_particles=max_particles,
                          max_jets_per_class=max_jets_per_class, progress=progress,
                          observers=tuple(observers), **options)
    if scalar_names is not None and tuple(arrays.scalar_names) != tuple(scalar_names):
        missing = sorted(set(scalar_names) - set(arrays.scalar_names))
        raise DataError(f"evaluation set {name!r}: its files lack the particle scalars {missing} that the "
                        f"training data has ({list(scalar_names)})")
    if max_jets is None or max_jets >= len(arrays):
        return arrays
    return arrays.subset(stratified_subsample(arrays.labels, max_jets, seed=0, stream=EVAL_SAMPLE_STREAM))


def load_eval_sets(data: Mapping[str, Any], *, scalar_names: Sequence[str] | None = None,
                   progress: bool = False) -> dict[str, JetArrays]:
    """Every evaluation set of the data settings ``data`` (plain data, e.g. the resolved ``data`` config),
    by name, read into memory with the training data's classes, padding and particle scalars."""
    out = {}
    for name, overrides in (data.get("eval_sets") or {}).items():
        paths, settings = eval_set_paths(data, name, overrides, progress=progress)
        out[name] = read_eval_set(paths, tree=settings.get("tree") or "tree",
                                  branches=settings.get("branches") or None, classes=list(data["classes"]),
                                  max_particles=data["max_particles"],
                                  max_jets_per_class=settings.get("max_jets_per_class"),
                                  max_jets=settings.get("max_jets"), scalar_names=scalar_names,
                                  observers=list(settings.get("observers") or ()), progress=progress, name=name,
                                  **{k: settings[k] for k in _READ_OPTIONS if settings.get(k) is not None})
    return out
