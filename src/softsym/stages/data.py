"""Data stage: jets from ROOT files (or generated with Pythia 8 when data=pythia), split and summarised."""

from __future__ import annotations

import logging

from softsym.stages import STAGES
from softsym.stages.context import StageContext

log = logging.getLogger(__name__)


@STAGES.register("data")
def run(ctx: StageContext) -> None:
    dataset = ctx.dataset()
    ctx.tracker.log_metrics(dataset.metrics())
    ctx.tracker.set_tags({"classes": ",".join(dataset.class_names)})
    log.info("data: %s", {k: round(v, 4) for k, v in dataset.metrics().items()})
