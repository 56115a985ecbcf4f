"""softsym's sweeper (``hydra/sweeper=grid``): Hydra's basic grid sweeper whose configured grid gives way to
a sweep typed on the command line (``softsym.config.sweeper``). Hydra instantiates plugins only from
``hydra_plugins``."""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from softsym.config.sweeper import sweeps_on_command_line

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    """``BasicSweeper`` whose configured ``params`` give way to a sweep typed on the command line, and which
    checks every job's options before the first job starts (a bad value in the sweep's fifth job would
    otherwise end the sweep after four jobs' work)."""

    def validate_batch_is_legal(self, batch) -> None:
        from softsym.cli import check_sweep_jobs

        loader = self.hydra_context.config_loader  # composing each job is Hydra's own check of the batch
        bad = check_sweep_jobs([(list(job), loader.load_sweep_config(self.config, list(job))) for job in batch])
        if bad:
            verb = "has" if len(bad) == 1 else "have"
            print(f"softsym: error: {len(bad)} of {len(batch)} jobs of the sweep {verb} bad options; no job was "
                  "started:\n  " + "\n  ".join(bad), file=sys.stderr)
            sys.exit(2)

    def sweep(self, arguments: list[str]) -> Any:
        typed = sweeps_on_command_line(arguments)
        if typed and self.params:
            log.info("the command line sweeps %s: it replaces the configured grid %s", " ".join(typed),
                     " ".join(f"{k}={v}" for k, v in self.params.items()))
            self.params = {}
        return super().sweep(arguments)
