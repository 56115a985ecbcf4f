"""The sweeper of ``softsym -m``: Hydra's basic grid sweeper, except that a sweep given on the command line
replaces the configured grid (``hydra.sweeper.params``: the experiment's or ``hparams_search``'s) instead of
being merged into it. ``softsym -m experiment=smoke`` runs the experiment's grid; ``softsym -m
experiment=smoke penalty=none,lorentz seed=0,1`` runs exactly those 4 jobs. The sweeper class itself lives in
``hydra_plugins.softsym_sweeper`` (Hydra instantiates plugins from that package only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser


def sweeps_on_command_line(arguments: Sequence[str]) -> list[str]:
    """The command-line overrides that sweep (``key=a,b``, ``key=range(...)``, ...), as typed."""
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    return [o.input_line for o in parsed if o.is_sweep_override()]


def job_overrides(grid: Mapping[str, Any] | None, arguments: Sequence[str]) -> list[list[str]]:
    """Every job's overrides, in launch order: the command line's sweep alone when it has one, else the
    configured ``grid`` with the command line's single values."""
    params = {} if sweeps_on_command_line(arguments) else dict(grid or {})
    lines = [f"{k}={v}" for k, v in params.items()] + list(arguments)
    overrides = OverridesParser.create().parse_overrides(lines)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]

