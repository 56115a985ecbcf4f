"""Stages: thin ``run(ctx)`` functions that call the library and log through the job's tracker, registered
in ``STAGES`` under the names ``stages=[...]`` takes and run in ``STAGE_ORDER``. Stages never import each
other: what several of them build from the config lives in ``softsym.stages.options``."""

from __future__ import annotations

from collections.abc import Callable

from softsym.registry import Registry

STAGES: Registry[Callable[..., None]] = Registry("stage")
STAGE_ORDER = ("data", "train", "complexity", "robustness", "distill")

from softsym.stages import complexity, data, distill, robustness, train  # noqa: E402, F401  (each registers its run)

__all__ = ["STAGES", "STAGE_ORDER"]
