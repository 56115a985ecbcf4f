"""softsym's sweeper (``hydra/sweeper=grid``): Hydra's basic grid sweeper whose configured grid gives way to
a sweep typed on the command line (``softsym.config.sweeper``). Hydra instantiates plugins only from
``hydra_plugins``."""

from __future__ import annotations

import logging
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from softsym.config.sweeper import sweeps_on_command_line

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    """``BasicSweeper`` whose configured ``params`` give way to a sweep typed on the command line."""

    def sweep(self, arguments: list[str]) -> Any:
        typed = sweeps_on_command_line(arguments)
        if typed and self.params:
            log.info("the command line sweeps %s: it replaces the configured grid %s", " ".join(typed),
                     " ".join(f"{k}={v}" for k, v in self.params.items()))
            self.params = {}
        return super().sweep(arguments)
