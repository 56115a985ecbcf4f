"""One shard from Pythia: the Pythia settings of each process, and the event loop that asks for batches of
events until the shard's jets are selected.

Physics settings: Pythia 8 defaults (Monash tune) at sqrt(s) = 13 TeV, with multi-parton interactions on
(the underlying event costs ~4-5x in generation time, see benchmarks/results/generator.json; ``mpi=False``
trades it for speed; as an evaluation set it is a simulation shift), optionally another final-state shower
alpha_s (``fsr_alpha_s``, a second simulation shift), hadron decays on, and particles with c*tau > 10 mm kept
stable (the LHC convention: K0S, Lambda reach the detector). Processes: hadronic ttbar (both W -> qq') and
QCD dijets (``HardQCD:all``), each with a pT-hat window that covers the jet-pT window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from softsym.data.errors import DataError
from softsym.data.pythia.clustering import jets_from_events
from softsym.data.pythia.config import SQRT_S, GenerationConfig, ShardStats, ShardTask
from softsym.data.pythia.shards import concatenate_blocks, write_shard

# Events per nextBatch call: the first call is small, later ones aim at the jets still missing.
_FIRST_BATCH, _MIN_BATCH, _MAX_BATCH = 32, 8, 256
_GIVE_UP_EVENTS = 5000  # events without a single selected jet before the window is declared unreachable


def generate_shard(task: ShardTask, *, report: Callable[[int], None] = lambda n: None) -> ShardStats:
    """Generate one shard and write it atomically to ``task.path``; ``report(n)`` is told of new jets."""
    start = time.perf_counter()
    config = task.config
    pythia = make_pythia(config, task.process, task.pythia_seed)
    detector_rng = np.random.default_rng(task.seed_sequence.spawn(1)[0])
    charges: dict[int, int] = {}
    blocks: list[dict[str, np.ndarray]] = []
    n_jets = n_events = 0
    while n_jets < task.n_jets:
        missing = task.n_jets - n_jets
        if n_jets == 0:
            if n_events >= _GIVE_UP_EVENTS:
                raise DataError(
                    f"no {task.process} jet passed the selection (pT {config.pt_min}-{config.pt_max} GeV, "
                    f"|eta| < {config.eta_max}) in {n_events} events with pT-hat {config.pthat_range}; "
                    "check the jet window and the pT-hat range")
            n_batch = _FIRST_BATCH
        else:
            n_batch = int(np.clip(math.ceil(1.1 * missing * n_events / n_jets), _MIN_BATCH, _MAX_BATCH))
        events = pythia.nextBatch(n_batch, errorMode="skip")
        n_events += n_batch
        block = jets_from_events(events, task.process, config, detector_rng, pythia.particleData, charges)
        n_new = min(len(block["jet_pt"]), missing)
        if n_new:
            blocks.append(block)
            n_jets += n_new
            report(n_new)
    write_shard(task, concatenate_blocks(blocks, task.n_jets))
    return ShardStats(task.path, task.n_jets, n_events, time.perf_counter() - start)


def make_pythia(config: GenerationConfig, process: str, seed: int):
    import pythia8mc

    pthat_min, pthat_max = config.pthat_range
    settings = [
        f"Beams:eCM = {SQRT_S}",
        "Print:quiet = on",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        f"PhaseSpace:pTHatMin = {pthat_min}",
        f"PhaseSpace:pTHatMax = {pthat_max}",
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
        *([f"TimeShower:alphaSvalue = {config.fsr_alpha_s}"] if config.fsr_alpha_s is not None else []),
        # the LHC convention for stable particles: c*tau > 10 mm (K0S, Lambda, ... reach the detector)
        "ParticleDecays:limitTau0 = on",
        "ParticleDecays:tau0Max = 10",
    ]
    if process == "ttbar":
        settings += ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
    else:
        settings += ["HardQCD:all = on"]
    pythia = pythia8mc.Pythia("", False)
    for line in settings:
        if not pythia.readString(line):
            raise DataError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise DataError(f"Pythia failed to initialise for {process} with settings {settings}")
    return pythia
