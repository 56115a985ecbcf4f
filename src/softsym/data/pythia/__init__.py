"""Physics-grade jets from Pythia 8 + FastJet, written as ROOT shards in the JetClass schema (``data=pythia``).

Processes at sqrt(s) = 13 TeV: hadronic ttbar (both W -> qq'; signal, ``label_Tbqq``) and QCD dijets
(``HardQCD:all``; ``label_QCD``). Per batch of events (Pythia's ``nextBatch`` hands the whole event records
over as one awkward array), everything after the generator is vectorised. The modules, in the order a shard
is made:

- ``config``: ``GenerationConfig`` (everything hashed into the cache name), ``ShardTask`` and ``shard_tasks``;
- ``generate``: ``generate_shards``, the cache directory, reuse and resume;
- ``pool``: the shard tasks run in this process or in spawned worker processes;
- ``events``: Pythia's settings and the event loop of one shard (``generate_shard``);
- ``detector``: the detector response applied to the particles before clustering;
- ``clustering``: visible particles, anti-kt jets, the selection and the substructure;
- ``shards``: the ROOT files written atomically under a lock, and the cleanup of stale temporaries.

Workers are spawned processes, so a script calling ``generate_shards(n_workers > 1)`` needs the usual
``if __name__ == "__main__":`` guard. Nothing here imports torch: the workers import this package.
"""

from softsym.data.pythia.config import (
    PROCESSES,
    GenerationConfig,
    GenerationResult,
    ShardStats,
    ShardTask,
    default_pthat_window,
    shard_tasks,
)
from softsym.data.pythia.detector import DetectorConfig
from softsym.data.pythia.events import generate_shard
from softsym.data.pythia.generate import generate_shards

__all__ = ["PROCESSES", "DetectorConfig", "GenerationConfig", "GenerationResult", "ShardStats", "ShardTask",
           "default_pthat_window", "generate_shard", "generate_shards", "shard_tasks"]
