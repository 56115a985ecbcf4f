"""Data stage: jets from ROOT files (or generated with Pythia 8 when data=pythia), split and summarised.

Besides the split sizes it logs what the checks found (``softsym.data.checks``): ``data_truncated_jets`` and
``data_truncated_particles_mean`` (jets longer than ``data.max_particles`` keep their hardest particles, and
their jet axis is the sum of those), ``data_unphysical_particles`` and ``data_dropped_jets``.
"""

from __future__ import annotations

import logging

from softsym.stages import STAGES
from softsym.stages.context import StageContext
from softsym.stages.options import eval_sets

log = logging.getLogger(__name__)


@STAGES.register("data")
def run(ctx: StageContext) -> None:
    dataset = ctx.dataset()
    metrics = dataset.metrics()
    ctx.tracker.log_metrics(metrics)
    ctx.tracker.set_tags({"classes": ",".join(dataset.class_names)})
    log.info("data: %s", {k: round(v, 4) for k, v in metrics.items()})
    for name, arrays in eval_sets(ctx).items():  # generated (or read) here once, before parallel jobs
        ctx.tracker.log_metrics({f"data_eval_{name}_n": float(len(arrays)),
                                 f"data_eval_{name}_signal_frac": float((arrays.labels != 0).mean())})
    if metrics.get("data_truncated_jets"):
        log.warning("data: %d jets have more than data.max_particles=%d particles and keep their hardest "
                    "(%.1f particles lost per truncated jet); jet axes and features come from the kept particles",
                    metrics["data_truncated_jets"], ctx.cfg.data.max_particles,
                    metrics["data_truncated_particles_mean"])
    if metrics.get("data_unphysical_particles"):
        log.warning("data: %d unphysical particle(s) (E <= 0 or E < |p|), %s (data.unphysical=%s)",
                    metrics["data_unphysical_particles"],
                    "removed" if ctx.cfg.data.unphysical == "drop" else "kept", ctx.cfg.data.unphysical)
