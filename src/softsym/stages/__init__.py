"""Stages: thin ``run(cfg, ctx)`` functions that call the library and log to MLflow, in pipeline order."""

from __future__ import annotations

import importlib

STAGE_ORDER = ("data", "train", "complexity", "robustness", "distill")


def stage_runner(name: str):
    if name not in STAGE_ORDER:
        raise ValueError(f"unknown stage {name!r}; expected a subset of {list(STAGE_ORDER)}")
    return importlib.import_module(f"softsym.stages.{name}").run
