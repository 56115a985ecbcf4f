"""Physics-grade jets from Pythia 8 + FastJet, written as ROOT shards in the JetClass schema (``data=pythia``).

Processes at sqrt(s) = 13 TeV: hadronic ttbar (both W -> qq'; signal, ``label_Tbqq``) and QCD dijets
(``HardQCD:all``; ``label_QCD``), each with a pT-hat window that covers the jet-pT window. Per batch of events
(Pythia's ``nextBatch`` hands the whole event records over as one awkward array), everything after the
generator is vectorised: visible final-state particles, an optional detector response (``detector.py``),
anti-kt R=0.8 clustering of all events at once with FastJet's awkward interface, the jet selection (the two
leading jets of an event inside the pT / |eta| window; a top jet must contain the b and both W quarks of one
hadronic top within dR < R, as in the public top-tagging reference dataset), and the substructure (soft-drop
mass, N-subjettiness) of the selected jets.

Shards: ``<out_dir>/pythia-<hash12>/{qcd,ttbar}_<i:03d>.root``, the hash taken over the whole generation
config, the seed and the generator versions. Each shard has its own seed, derived from (seed, process, index),
so its content does not depend on the number of workers or on which shards were already there. A shard is
written to a locked temporary file and renamed into place, so a file with the final name is always complete;
a shard that exists is reused, and an interrupted generation resumes shard by shard.

Physics settings: Pythia 8 defaults (Monash tune) with multi-parton interactions on (the underlying event
costs ~4-5x in generation time, see benchmarks/results/generator.json; ``mpi=False`` trades it for speed),
hadron decays on, and particles with c*tau > 10 mm kept stable (the LHC convention: K0S, Lambda reach the
detector). Workers are spawned processes, so a script calling ``generate_shards(n_workers > 1)`` needs the
usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import queue
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import awkward as ak
import numpy as np

from softsym.data.detector import (
    CHARGED_HADRON,
    ELECTRON,
    KIND_BRANCHES,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    DetectorConfig,
    Particles,
    apply_detector,
)
from softsym.data.errors import DataError

__all__ = ["PROCESSES", "DetectorConfig", "GenerationConfig", "GenerationResult", "ShardStats", "ShardTask",
           "default_pthat_window", "generate_shard", "generate_shards", "shard_tasks"]

log = logging.getLogger(__name__)

# Bump when the content or layout of a shard changes, so old caches are not reused.
FORMAT_VERSION = 1
PROCESSES = ("qcd", "ttbar")
_LABELS = {"qcd": (1.0, 0), "ttbar": (0.0, 1)}  # (label_QCD float32, label_Tbqq int32), as in JetClass
_PROCESS_CODE = {"qcd": 0, "ttbar": 1}
_SQRT_S = 13000.0
_NEUTRINOS = (12, 14, 16)
_PYTHIA_SEED_MAX = 900_000_000
# Events per nextBatch call: the first call is small, later ones aim at the jets still missing.
_FIRST_BATCH, _MIN_BATCH, _MAX_BATCH = 32, 8, 256
_GIVE_UP_EVENTS = 5000  # events without a single selected jet before the window is declared unreachable
_TMP_SUFFIX = ".tmp"


def default_pthat_window(pt_min: float, pt_max: float) -> tuple[float, float]:
    """Generator-level pT-hat range for a jet-pT window [pt_min, pt_max]: [0.8 pt_min, 1.2 pt_max].

    Calibrated for 550-650 GeV on Pythia 8 at 13 TeV against a 330-1100 GeV reference sample: the range
    [440, 780] keeps 94% of the selected top jets and 85% of the QCD jets (what it misses are jets pushed
    above the window by ISR recoil from lower pT-hat; none come from above 780 for tops, 1.4% for QCD), and
    yields 0.25 top / 0.37 QCD jets per event instead of 0.07 / 0.09. Lowering it to 0.7 pt_min would halve
    the yield for a few percent more coverage; pass ``pthat_min``/``pthat_max`` to choose otherwise.
    """
    return 0.8 * pt_min, 1.2 * pt_max


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that determines the content of the shards (hashed into the cache name)."""

    n_jets_per_class: int
    pt_min: float = 550.0
    pt_max: float = 650.0
    eta_max: float = 2.0
    seed: int = 0
    jets_per_shard: int = 1000
    detector: DetectorConfig | None = field(default_factory=DetectorConfig)
    jet_r: float = 0.8
    pthat_min: float | None = None  # None: default_pthat_window
    pthat_max: float | None = None
    mpi: bool = True
    max_jets_per_event: int = 2

    def __post_init__(self) -> None:
        # normalise types as well as check them: 550 and 550.0 (or numpy ints) must give the same cache key
        for name in ("n_jets_per_class", "jets_per_shard", "max_jets_per_event", "seed"):
            minimum = 0 if name == "seed" else 1
            _check_int(name, getattr(self, name), minimum)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("pt_min", "pt_max", "eta_max", "jet_r", "pthat_min", "pthat_max"):
            value = getattr(self, name)
            if value is None and name.startswith("pthat"):
                continue
            if not (isinstance(value, int | float | np.number) and not isinstance(value, bool)
                    and 0 < value < math.inf):
                raise DataError(f"{name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.mpi, bool):
            raise DataError(f"mpi must be true or false, got {self.mpi!r}")
        if self.pt_min >= self.pt_max:
            raise DataError(f"pt_min ({self.pt_min}) must be below pt_max ({self.pt_max})")
        if self.pt_max > _SQRT_S / 2:
            raise DataError(f"pt_max ({self.pt_max} GeV) is above sqrt(s)/2 = {_SQRT_S / 2} GeV")
        if self.detector is not None and not isinstance(self.detector, DetectorConfig):
            raise DataError(f"detector must be a DetectorConfig or None, got {type(self.detector).__name__}")
        if self.detector is not None and not self.detector.enabled:
            object.__setattr__(self, "detector", None)  # one cache for "off", however it was said
        lo, hi = self.pthat_range
        if lo >= hi:
            raise DataError(f"pT-hat range [{lo}, {hi}] is empty; expected pthat_min < pthat_max")
        if lo > self.pt_max or hi < self.pt_min:
            raise DataError(f"pT-hat range [{lo}, {hi}] does not overlap the jet-pT window "
                            f"[{self.pt_min}, {self.pt_max}]")

    @property
    def pthat_range(self) -> tuple[float, float]:
        lo, hi = default_pthat_window(self.pt_min, self.pt_max)
        return (lo if self.pthat_min is None else self.pthat_min, hi if self.pthat_max is None else self.pthat_max)

    @property
    def particle_eta_max(self) -> float:
        """Particle acceptance: wide enough to contain every jet of the |eta| window."""
        return self.eta_max + self.jet_r

    def describe(self) -> dict:
        """The config as plain data, with the resolved pT-hat range and the generator versions."""
        lo, hi = self.pthat_range
        out = asdict(self) | {"pthat_min": lo, "pthat_max": hi, "format_version": FORMAT_VERSION}
        out["versions"] = {name: importlib.metadata.version(name) for name in ("pythia8mc", "fastjet")}
        return out

    @property
    def key(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ShardTask:
    """One shard to produce: its process, index, size, seed and final path."""

    config: GenerationConfig
    process: str
    index: int
    n_jets: int
    path: Path

    @property
    def seed_sequence(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.config.seed, spawn_key=(_PROCESS_CODE[self.process], self.index))

    @property
    def pythia_seed(self) -> int:
        return int(self.seed_sequence.generate_state(1, np.uint64)[0] % _PYTHIA_SEED_MAX) + 1


@dataclass(frozen=True)
class ShardStats:
    """One generated shard: its jets, the Pythia events generated for it (with the surplus of the last
    batch), and the wall time."""

    path: Path
    n_jets: int
    n_events: int
    seconds: float


@dataclass(frozen=True)
class GenerationResult:
    """What ``generate_shards`` produced: all shard paths (qcd shards, then ttbar), and what it reused."""

    paths: tuple[Path, ...]
    cache_dir: Path
    n_generated_shards: int
    n_reused_shards: int
    n_jets_per_class: int
    n_generated_jets: int
    n_generated_events: int
    seconds: float

    @property
    def jets_per_second(self) -> float:
        return self.n_generated_jets / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.n_generated_shards == 0:
            return f"reused all {self.n_reused_shards} pythia shards in {self.cache_dir} ({self.seconds:.2f} s)"
        return (f"generated {self.n_generated_shards} pythia shards ({self.n_generated_jets} jets from "
                f"{self.n_generated_events} events, {self.jets_per_second:.1f} jets/s), reused "
                f"{self.n_reused_shards}, in {self.cache_dir} "
                f"({self.seconds:.1f} s)")


def shard_tasks(config: GenerationConfig, cache_dir: Path) -> list[ShardTask]:
    """All shards of a generation, both classes interleaved so that an interrupted run keeps them balanced."""
    n_full, rest = divmod(config.n_jets_per_class, config.jets_per_shard)
    sizes = [config.jets_per_shard] * n_full + ([rest] if rest else [])
    return [ShardTask(config, process, index, size, cache_dir / f"{process}_{index:03d}.root")
            for index, size in enumerate(sizes) for process in PROCESSES]


def generate_shards(
    *,
    out_dir: str | os.PathLike,
    n_jets_per_class: int,
    pt_min: float = 550.0,
    pt_max: float = 650.0,
    eta_max: float = 2.0,
    seed: int = 0,
    n_workers: int = 1,
    jets_per_shard: int = 1000,
    detector: DetectorConfig | Mapping | None = DetectorConfig(),  # noqa: B008 - frozen, never mutated
    pthat_min: float | None = None,
    pthat_max: float | None = None,
    mpi: bool = True,
    max_jets_per_event: int = 2,
    progress: bool = False,
) -> GenerationResult:
    """Generate (or reuse) ``n_jets_per_class`` top and QCD jets as ROOT shards under ``out_dir``.

    ``detector``: a ``DetectorConfig`` (or a mapping of its fields, e.g. from a config file); None or
    ``enabled=False`` gives generator-level particles. Shards that exist are reused; missing ones are
    generated by ``n_workers`` processes (each builds its own Pythia). ``pthat_min/max`` default to
    ``default_pthat_window(pt_min, pt_max)``; ``mpi=False`` switches multi-parton interactions off (faster,
    but no underlying event in the jets).
    """
    start = time.perf_counter()
    if isinstance(detector, Mapping):
        detector = _detector_from_mapping(detector)
    config = GenerationConfig(
        n_jets_per_class=n_jets_per_class, pt_min=pt_min, pt_max=pt_max, eta_max=eta_max, seed=seed,
        jets_per_shard=jets_per_shard, detector=detector,
        pthat_min=pthat_min, pthat_max=pthat_max, mpi=mpi, max_jets_per_event=max_jets_per_event,
    )
    _check_int("n_workers", n_workers, 1)
    cache_dir = Path(out_dir).expanduser() / f"pythia-{config.key}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not (cache_dir / "config.json").exists():  # provenance; a complete cache may be read-only
        _write_json_atomically(cache_dir / "config.json", config.describe())
    _remove_stale_temporaries(cache_dir)

    tasks = shard_tasks(config, cache_dir)
    missing = [t for t in tasks if not t.path.exists()]
    n_reused = len(tasks) - len(missing)
    if missing and n_reused:
        log.info("pythia: resuming, %d of %d shards already in %s", n_reused, len(tasks), cache_dir)
    stats = _run_tasks(missing, n_workers=n_workers, progress=progress) if missing else []
    result = GenerationResult(
        paths=tuple(t.path for p in PROCESSES for t in tasks if t.process == p), cache_dir=cache_dir,
        n_generated_shards=len(missing), n_reused_shards=n_reused, n_jets_per_class=n_jets_per_class,
        n_generated_jets=sum(s.n_jets for s in stats), n_generated_events=sum(s.n_events for s in stats),
        seconds=time.perf_counter() - start,
    )
    log.info("%s", result.summary())
    return result


# ----------------------------------------------------------------------------------------------------------
# Running shard tasks, in this process or in a pool


def _run_tasks(tasks: list[ShardTask], *, n_workers: int, progress: bool) -> list[ShardStats]:
    from tqdm.auto import tqdm

    n_jets = sum(t.n_jets for t in tasks)
    with tqdm(total=n_jets, unit="jet", desc="pythia jets", disable=not progress, smoothing=0.1) as bar:
        if n_workers == 1 or len(tasks) == 1:
            return [generate_shard(task, report=bar.update) for task in tasks]
        # spawn, not fork: Pythia and FastJet state must be built inside each worker, and forking a parent
        # that may hold torch/OpenMP threads is unsafe.
        context = multiprocessing.get_context("spawn")
        reports = context.Queue()
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(n_workers, len(tasks)), mp_context=context,
            initializer=_init_worker, initargs=(reports,),
        ) as pool:
            futures = [pool.submit(_worker_generate_shard, task) for task in tasks]
            try:
                pending = set(futures)
                while pending:
                    done, pending = concurrent.futures.wait(pending, timeout=0.2,
                                                            return_when=concurrent.futures.FIRST_COMPLETED)
                    _drain(reports, bar)
                    for future in done:
                        future.result()  # re-raise a worker's error here
                _drain(reports, bar)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            return [future.result() for future in futures]


def _drain(reports, bar) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            bar.update(reports.get_nowait())


_worker_reports = None


def _init_worker(reports) -> None:
    global _worker_reports
    _worker_reports = reports


def _worker_generate_shard(task: ShardTask) -> ShardStats:
    return generate_shard(task, report=_worker_reports.put)


def generate_shard(task: ShardTask, *, report: Callable[[int], None] = lambda n: None) -> ShardStats:
    """Generate one shard and write it atomically to ``task.path``; ``report(n)`` is told of new jets."""
    start = time.perf_counter()
    config = task.config
    pythia = _make_pythia(config, task.process, task.pythia_seed)
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
        block = _jets_from_events(events, task.process, config, detector_rng, pythia.particleData, charges)
        n_new = min(len(block["jet_pt"]), missing)
        if n_new:
            blocks.append(block)
            n_jets += n_new
            report(n_new)
    _write_shard(task, _concatenate_blocks(blocks, task.n_jets))
    return ShardStats(task.path, task.n_jets, n_events, time.perf_counter() - start)


def _make_pythia(config: GenerationConfig, process: str, seed: int):
    import pythia8mc

    pthat_min, pthat_max = config.pthat_range
    settings = [
        f"Beams:eCM = {_SQRT_S}",
        "Print:quiet = on",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        f"PhaseSpace:pTHatMin = {pthat_min}",
        f"PhaseSpace:pTHatMax = {pthat_max}",
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
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


# ----------------------------------------------------------------------------------------------------------
# From a batch of Pythia events to selected jets (all vectorised over the batch)


def _jets_from_events(events: ak.Array, process: str, config: GenerationConfig, rng: np.random.Generator,
                      particle_data, charges: dict[int, int]) -> dict[str, np.ndarray]:
    import fastjet

    from softsym.physics.substructure import jagged_p4, jet_substructure

    n_events = len(events)
    record = _flat_record(events)
    pid, status, px, py, pz = (record[k] for k in ("pid", "status", "px", "py", "pz"))

    visible = (status > 0) & ~np.isin(np.abs(pid), _NEUTRINOS)
    visible &= np.hypot(px, py) > 0
    index = np.flatnonzero(visible)
    charge = _charges(pid[index], particle_data, charges)
    particles = Particles(record["event"][index], px[index], py[index], pz[index], record["energy"][index],
                          charge, _kinds(pid[index], charge))
    particles = particles.take(np.flatnonzero(np.abs(particles.eta) < config.particle_eta_max))
    if config.detector is not None:
        particles = apply_detector(particles, config.detector, rng)

    # anti-kt on all events of the batch at once; jets below pt_min are never candidates
    counts = np.bincount(particles.event, minlength=n_events)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    inputs = jagged_p4(particles.px, particles.py, particles.pz, particles.energy, counts)
    sequence = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_r))
    constituent_index = sequence.constituent_index(min_pt=config.pt_min)
    jets_per_event = ak.to_numpy(ak.num(constituent_index, axis=1))
    jet_event = np.repeat(np.arange(n_events), jets_per_event)
    n_constituents = ak.to_numpy(ak.flatten(ak.num(constituent_index, axis=2)))
    constituent = ak.to_numpy(ak.flatten(constituent_index, axis=None)).astype(np.int64)
    constituent += np.repeat(offsets[jet_event], n_constituents)
    constituent_jet = np.repeat(np.arange(len(jet_event)), n_constituents)

    # jets as the 4-vector sum of their constituents (E-scheme), so the written file is self-consistent
    jet = [np.bincount(constituent_jet, weights=getattr(particles, f)[constituent], minlength=len(jet_event))
           for f in ("px", "py", "pz", "energy")]
    jet_pt = np.hypot(jet[0], jet[1])
    jet_eta = np.arcsinh(jet[2] / np.maximum(jet_pt, 1e-12))
    jet_phi = np.arctan2(jet[1], jet[0])

    # the max_jets_per_event leading jets of each event, then the window (and, for tops, the matching)
    order = np.lexsort((-jet_pt, jet_event))
    first_of_event = np.concatenate([[0], np.cumsum(jets_per_event)])[jet_event[order]]
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - first_of_event
    selected = (rank < config.max_jets_per_event) & (jet_pt >= config.pt_min) & (jet_pt <= config.pt_max)
    selected &= np.abs(jet_eta) < config.eta_max
    if process == "ttbar":
        selected &= _matched_to_hadronic_top(jet_eta, jet_phi, jet_event, record, n_events, config.jet_r)
    chosen = np.flatnonzero(selected)

    # constituents of the chosen jets, grouped by jet and pT-sorted within it
    keep = selected[constituent_jet]
    new_jet = (np.cumsum(selected) - 1)[constituent_jet[keep]]
    part = particles.take(constituent[keep])
    order = np.lexsort((-part.pt, new_jet))
    part, new_jet = part.take(order), new_jet[order]
    counts_chosen = np.bincount(new_jet, minlength=len(chosen))

    sub = jet_substructure(part.px, part.py, part.pz, part.energy, counts_chosen)
    deta = part.eta - jet_eta[chosen][new_jet]
    dphi = _wrap(part.phi - jet_phi[chosen][new_jet])
    block = {
        "jet_pt": jet_pt[chosen], "jet_eta": jet_eta[chosen], "jet_phi": jet_phi[chosen],
        "jet_energy": jet[3][chosen], "jet_nparticles": counts_chosen, "jet_sdmass": sub.sdmass,
        **{f"jet_tau{n + 1}": sub.tau[:, n] for n in range(sub.tau.shape[1])},
        "part_px": part.px, "part_py": part.py, "part_pz": part.pz, "part_energy": part.energy,
        "part_deta": deta, "part_dphi": dphi, "part_charge": part.charge,
        **{name: (part.kind == kind) for kind, name in enumerate(KIND_BRANCHES)},
    }
    return block


def _charges(pid: np.ndarray, particle_data, cache: dict[int, int]) -> np.ndarray:
    """Electric charge (units of e) per particle, asking Pythia once per species."""
    species, inverse = np.unique(pid, return_inverse=True)
    for s in species.tolist():
        if s not in cache:
            cache[s] = round(particle_data.charge(s))
    return np.array([cache[s] for s in species.tolist()], np.int32)[inverse]


def _kinds(pid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    apid = np.abs(pid)
    kind = np.where(charge != 0, CHARGED_HADRON, NEUTRAL_HADRON)
    kind = np.where(pid == 22, PHOTON, kind)
    kind = np.where(apid == 11, ELECTRON, kind)
    kind = np.where(apid == 13, MUON, kind)
    return kind.astype(np.int8)


def _flat_record(events: ak.Array) -> dict[str, np.ndarray]:
    """The full event records of a batch as flat numpy arrays (``mother`` as an index into them)."""
    record = events.prt
    counts = ak.to_numpy(ak.num(record))
    event = np.repeat(np.arange(len(counts)), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])[:-1]
    flat = {"event": event,
            "pid": ak.to_numpy(ak.flatten(record.id)).astype(np.int64),
            "status": ak.to_numpy(ak.flatten(record.status)),
            "mother": ak.to_numpy(ak.flatten(record.mother1)).astype(np.int64) + offsets[event]}
    momentum = record.p
    for name, source in (("px", "px"), ("py", "py"), ("pz", "pz"), ("energy", "e")):
        flat[name] = ak.to_numpy(ak.flatten(momentum[source]))
    return flat


def _matched_to_hadronic_top(jet_eta: np.ndarray, jet_phi: np.ndarray, jet_event: np.ndarray,
                             record: dict[str, np.ndarray], n_events: int, radius: float) -> np.ndarray:
    """Whether each jet contains (dR < radius) the b and both W-decay quarks of one of the event's tops.

    The top decay quarks are the outgoing partons (|status| 23) of a quark flavour whose mother is a top
    (the b) or a W (the two W quarks); the mother's sign says which top they came from.
    """
    pid, status = record["pid"], record["status"]
    mother_pid = pid[record["mother"]]
    apid = np.abs(pid)
    is_decay_quark = (apid >= 1) & (apid <= 5) & (np.abs(status) == 23)
    is_decay_quark &= (np.abs(mother_pid) == 6) | (np.abs(mother_pid) == 24)
    index = np.flatnonzero(is_decay_quark)  # grouped by event, as the record is
    slot = record["event"][index] * 2 + (mother_pid[index] < 0)  # per event: 0 = t (W+), 1 = tbar (W-)
    order = np.argsort(slot, kind="stable")
    index, slot = index[order], slot[order]
    position = np.arange(len(slot)) - np.searchsorted(slot, slot)
    complete = (np.bincount(slot, minlength=2 * n_events) == 3)[slot]  # exactly b + 2 quarks, else unmatched
    index, slot, position = index[complete], slot[complete], position[complete]
    eta = np.full((2 * n_events, 3), np.nan)
    phi = np.full((2 * n_events, 3), np.nan)
    px, py, pz = record["px"][index], record["py"][index], record["pz"][index]
    eta[slot, position] = np.arcsinh(pz / np.hypot(px, py))
    phi[slot, position] = np.arctan2(py, px)
    eta, phi = eta.reshape(n_events, 2, 3), phi.reshape(n_events, 2, 3)
    d_eta = eta[jet_event] - jet_eta[:, None, None]
    d_phi = _wrap(phi[jet_event] - jet_phi[:, None, None])
    inside = np.hypot(d_eta, d_phi) < radius  # NaN (no complete top) compares False
    return np.any(np.all(inside, axis=2), axis=1)


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


# ----------------------------------------------------------------------------------------------------------
# Writing shards


_JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "jet_sdmass",
                 "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4")
_FLOAT_PARTICLE_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi",
                            "part_charge")


def _concatenate_blocks(blocks: list[dict[str, np.ndarray]], n_jets: int) -> dict[str, np.ndarray]:
    """The first ``n_jets`` jets of the blocks, in generation order."""
    joined = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    n_particles = int(joined["jet_nparticles"][:n_jets].sum())
    return {name: values[:n_jets] if name.startswith("jet_") else values[:n_particles]
            for name, values in joined.items()}


def _write_shard(task: ShardTask, arrays: dict[str, np.ndarray]) -> None:
    """One TTree ``tree`` in the JetClass schema: jagged ``part_*`` (one counter ``npart``), ``jet_*``
    float32, labels ``label_QCD`` (float32) and ``label_Tbqq`` (int32) as in JetClass."""
    import uproot

    n_jets = len(arrays["jet_pt"])
    particle_fields = {name.removeprefix("part_"): arrays[name].astype(np.float32)
                       for name in _FLOAT_PARTICLE_BRANCHES}
    particle_fields |= {name.removeprefix("part_"): arrays[name].astype(np.int32) for name in KIND_BRANCHES}
    label_qcd, label_tbqq = _LABELS[task.process]
    branches = {
        "part": ak.unflatten(ak.zip(particle_fields), arrays["jet_nparticles"]),
        **{name: arrays[name].astype(np.float32) for name in _JET_BRANCHES},
        "label_QCD": np.full(n_jets, label_qcd, np.float32),
        "label_Tbqq": np.full(n_jets, label_tbqq, np.int32),
    }
    with _locked_temporary(task.path) as tmp:
        with uproot.recreate(tmp, compression=uproot.LZ4(1)) as file:
            file.mktree("tree", branches, title=f"softsym pythia {task.process} shard {task.index}")


@contextlib.contextmanager
def _locked_temporary(path: Path):
    """Yields a temporary path next to ``path``, exclusively locked; renamed to ``path`` when the block succeeds.

    The lock is held on our own handle of the same file (uproot opens the path itself, in place); the OS
    releases it when the writer dies, which tells a later run that the temporary is stale.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")
    with open(tmp, "xb") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield tmp
            os.fsync(lock.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _remove_stale_temporaries(cache_dir: Path) -> None:
    """Delete temporaries left by killed writers (their lock is gone); leave those still being written."""
    for tmp in cache_dir.glob(f".*{_TMP_SUFFIX}"):
        try:
            with open(tmp, "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                tmp.unlink(missing_ok=True)
                log.info("pythia: removed %s, left by an interrupted run", tmp.name)
        except BlockingIOError:
            continue  # another process is writing it right now
        except (FileNotFoundError, PermissionError):
            continue  # gone meanwhile, or a read-only cache that is not ours to clean


def _write_json_atomically(path: Path, content: dict) -> None:
    with _locked_temporary(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")


def _detector_from_mapping(options: Mapping) -> DetectorConfig:
    known = {f.name for f in fields(DetectorConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"unknown detector option(s) {unknown}; expected some of {sorted(known)}")
    return DetectorConfig(**options)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
