"""Every option of a job checked before any work starts and before any MLflow run exists.

``check_config(config, overrides)`` takes the job's resolved config as plain mappings (no Hydra, no
OmegaConf) and raises one ``ConfigError`` naming each bad option, its value and what is expected:

- ``softsym.config.schema.SCHEMA``: option → type, range or choices (names chosen from a registry are
  checked against it). An option of the table that a config does not
  have is not checked (the data sources differ in their keys); values left as ``???`` are required.
- relations between options (``check_relations``): ``model.size`` among ``model.sizes`` and its keys the
  model's constructor options, the penalty and perturbation options accepted by what they build, the pT
  window, a trained model for stages that need one when the train stage does not run.
- keys added with ``+key=value``: refused (with close matches) unless under a mapping that takes new keys
  (``OPEN_MAPPINGS``), because nothing else would read them.

``unknown_option_message`` words Hydra's refusal of an override of a key that does not exist.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from softsym.config.schema import PENALTY_NAMES, SCHEMA, list_of, number, one_of

MISSING = "???"
# Mappings whose keys the user chooses: new keys may be added there with +key=value.
OPEN_MAPPINGS = ("data.branches", "data.eval_sets*", "data.detector*", "data.observers*", "model.sizes*",
                 "distill.student.sizes*", "distill.penalty*", "robustness.perturbations*", "hydra*")
# What to give for options that have no default.
REQUIRED_HINTS = {
    "data.paths": "ROOT/Parquet files or globs, e.g. data.paths=[/data/JetClass/val_5M/*.root]",
    "data.tree": "the name of the tree in the files, e.g. data.tree=jets",
}


class ConfigError(ValueError):
    """Options that are wrong; the message names each one, its value and what is expected."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            problem = self.problems[0]
            message = problem if problem.startswith("unknown option") else f"bad option {problem}"
        else:
            message = f"{len(self.problems)} bad options: " + "; ".join(self.problems)
        super().__init__(message)


def lookup(config: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def dotted_keys(config: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in config.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping):
            yield from dotted_keys(value, f"{name}.")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).replace("None", "null")


def missing_values(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in dotted_keys(config):
        present, value = lookup(config, key)
        if present and value == MISSING:
            hint = REQUIRED_HINTS.get(key, "a value")
            problems.append(f"{key}={MISSING}: required, there is no default: give {hint}")
    return problems


def check_values(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, spec in SCHEMA.items():
        present, value = lookup(config, key)
        if not present or value == MISSING:
            continue
        problem = spec.problem(value)
        if problem:
            problems.append(f"{key}={_show(value)}: {problem}")
    return problems


def close_keys(key: str, known: Sequence[str], n: int = 3) -> list[str]:
    """Known dotted keys close to ``key``: by the whole name, then by its last part."""
    found = difflib.get_close_matches(key, known, n=n, cutoff=0.7)
    leaf = key.rsplit(".", 1)[-1]
    leaves: dict[str, list[str]] = {}
    for k in known:
        leaves.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    for match in difflib.get_close_matches(leaf, list(leaves), n=n, cutoff=0.75):
        found += [k for k in leaves[match] if k not in found]
    return found[:n]


def unknown_option_message(key: str, value: str | None, known: Sequence[str]) -> str:
    """The paragraph for an option that no config has (a typo, most often)."""
    close = close_keys(key, [k for k in known if not k.startswith("hydra.")])
    shown = f"{key}={value}" if value is not None else key
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = sorted(k.rsplit(".", 1)[-1] for k in known if "." in k and k.rsplit(".", 1)[0] == parent)
    text_ = f"unknown option {shown}: no config has the key {key!r}"
    if close:
        text_ += f"; did you mean {' or '.join(close)}?"
    elif siblings:
        text_ += f"; the options of {parent} are {siblings}"
    return text_


def check_added_keys(config: Mapping[str, Any], overrides: Sequence[str], groups: Sequence[str] = ()) -> list[str]:
    """``+key=value`` overrides that add a key no stage reads (outside ``OPEN_MAPPINGS``)."""
    added = []
    for override in overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key, value = override[1:].split("=", 1)
        if key in groups or "/" in key or "@" in key:
            continue  # a config group appended to the defaults list
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        if any(fnmatchcase(parent, pattern) or fnmatchcase(key, pattern) for pattern in OPEN_MAPPINGS):
            continue
        added.append((key, value))
    known = [k for k in dotted_keys(config) if k not in {key for key, _ in added}]
    return [unknown_option_message(key, value, known) + " (keys added with + are read by nothing here)"
            for key, value in added]


def _constructor_problems(where: str, owner: str, factory: Callable, options: Mapping[str, Any],
                          given_elsewhere: Sequence[str] = ()) -> list[str]:
    """Keys of ``options`` that ``factory`` does not take (nothing to say when it takes ``**options``)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    allowed = [name for name, p in parameters.items()
               if p.kind is not inspect.Parameter.VAR_POSITIONAL and name not in given_elsewhere]
    problems = []
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=2)
            hint = f"did you mean {' or '.join(close)}?" if close else f"it takes {sorted(allowed) or 'none'}"
            problems.append(f"{where}.{key}: not an option of {owner}; {hint}")
    return problems


def _build_problem(what: str, build: Callable[[], Any]) -> list[str]:
    try:
        build()
    except (TypeError, ValueError, KeyError) as err:
        return [f"{what}: {err}"]
    return []


def _model_problems(where: str, name: str, sizes: Mapping[str, Any], size: str) -> list[str]:
    from softsym.models import MODELS

    if size not in sizes:
        close = difflib.get_close_matches(str(size), list(sizes), n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return [f"{where}={_show(size)}: expected one of {list(sizes)} (the sizes of model {name}){hint}"]
    if not isinstance(sizes[size], Mapping):
        return [f"{where.rsplit('.', 1)[0]}.sizes.{size}: expected a mapping of {name}'s constructor options"]
    return _constructor_problems(f"{where.rsplit('.', 1)[0]}.sizes.{size}", f"model {name}", MODELS.get(name),
                                 sizes[size], given_elsewhere=("n_features", "n_classes"))


def _penalty_problems(where: str, section: Mapping[str, Any]) -> list[str]:
    from softsym.penalties import PENALTIES

    options = {k: v for k, v in section.items() if k not in ("name", "lambda")}
    return _build_problem(f"{where}={section.get('name')}", lambda: PENALTIES.build(
        section["name"], weight=float(section.get("lambda", 0.0)), **options))


def _perturbation_problems(perturbations: Mapping[str, Any]) -> list[str]:
    from softsym.robustness.perturbations import PERTURBATIONS

    problems = []
    for name, entry in perturbations.items():
        where = f"robustness.perturbations.{name}"
        if name not in PERTURBATIONS:
            close = difflib.get_close_matches(name, PERTURBATIONS.names(), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; expected one of {PERTURBATIONS.names()}"
            problems.append(f"{where}: unknown perturbation {name!r}{hint}")
            continue
        options = dict(entry) if isinstance(entry, Mapping) else {}
        strengths = options.pop("strengths", None)
        problem = list_of(number()).problem(strengths)
        if problem:
            problems.append(f"{where}.strengths={_show(strengths)}: {problem}")
        unknown = _constructor_problems(where, f"perturbation {name}", PERTURBATIONS.get(name), options)
        problems += unknown or _build_problem(where, lambda n=name, o=options: PERTURBATIONS.build(n, **o))
    return problems


def check_relations(config: Mapping[str, Any]) -> list[str]:
    """Checks that need several options, or that build what the options select (cheap: no data, no model)."""
    problems: list[str] = []
    def get(key: str) -> Any:
        return lookup(config, key)[1]

    if get("data.source") == "files" and not get("data.paths"):
        problems.append(f"data.paths={_show(get('data.paths'))}: data.source=files reads the files given here: "
                        f"give {REQUIRED_HINTS['data.paths']}")
    pt_min, pt_max = get("data.pt_min"), get("data.pt_max")
    if pt_min is not None and pt_max is not None and pt_max <= pt_min:
        problems.append(f"data.pt_max={pt_max}: expected a number > data.pt_min={pt_min}")
    splits = get("data.splits")
    if splits is not None and (len(splits) != 3 or abs(sum(splits) - 1) > 1e-6):
        problems.append(f"data.splits={splits}: expected three fractions (train, val, test) adding up to 1")
    if get("model.name") is not None and get("model.sizes") is not None:
        problems += _model_problems("model.size", get("model.name"), get("model.sizes"), get("model.size"))
    student = get("distill.student.name")
    if student is not None and get("distill.student.sizes") is not None:
        problems += _model_problems("distill.student.name", student, get("distill.student.sizes"), student)
    if get("penalty.name") is not None:
        problems += _penalty_problems("penalty", get("penalty"))
    distill_penalty = get("distill.penalty")
    if isinstance(distill_penalty, Mapping):
        problem = one_of(PENALTY_NAMES).problem(distill_penalty.get("name"))
        problems += ([f"distill.penalty.name={_show(distill_penalty.get('name'))}: {problem}"] if problem
                     else _penalty_problems("distill.penalty", distill_penalty))
    perturbations = get("robustness.perturbations") or {}
    problems += _perturbation_problems(perturbations)
    for name in get("distill.robustness") or ():
        if name not in perturbations:
            problems.append(f"distill.robustness: {name!r} is not among robustness.perturbations "
                            f"{sorted(perturbations)} (the student is evaluated on those grids)")
    stages = get("stages") or []
    needs_model = [s for s in stages if s in ("complexity", "robustness", "distill")]
    if needs_model and "train" not in stages:
        checkpoint = get("train.checkpoint")
        if not checkpoint:
            named = " and ".join(needs_model)
            problems.append(f"stages={list(stages)}: the {named} stage{'s' if len(needs_model) > 1 else ''} "
                            f"need{'' if len(needs_model) > 1 else 's'} a trained model: add the train stage or "
                            f"set train.checkpoint=<path to a model.pt written by the train stage>")
        elif not Path(checkpoint).is_file():
            problems.append(f"train.checkpoint={checkpoint!r}: no such file (expected a model.pt written by the "
                            f"train stage)")
    return problems


def check_config(config: Mapping[str, Any], overrides: Sequence[str] = (), groups: Sequence[str] = ()) -> None:
    """Raise ``ConfigError`` naming every bad option of the resolved ``config`` (plain mappings)."""
    problems = missing_values(config) + check_added_keys(config, overrides, groups)
    problems += check_values(config)
    if not problems:  # relations assume well-typed values
        problems += check_relations(config)
    if problems:
        raise ConfigError(problems)
