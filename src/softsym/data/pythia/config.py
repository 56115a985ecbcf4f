"""What determines a Pythia generation: its config (hashed into the cache name), the shards it is cut into
(each with its own seed), and what a generation reports back."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from softsym.data.errors import DataError
from softsym.data.pythia.detector import DetectorConfig

# Bump when the content or layout of a shard changes, so old caches are not reused.
FORMAT_VERSION = 1
PROCESSES = ("qcd", "ttbar")
_PROCESS_CODE = {"qcd": 0, "ttbar": 1}
SQRT_S = 13000.0
_PYTHIA_SEED_MAX = 900_000_000
_OPTIONAL = ("pthat_min", "pthat_max", "fsr_alpha_s")
# Generation options added after caches existed, with the value that reproduces the earlier shards.
_UNHASHED_DEFAULTS = {"fsr_alpha_s": None}


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
    # Final-state shower alpha_s(m_Z) (Pythia's TimeShower:alphaSvalue); None: the tune's (Monash 0.1365).
    fsr_alpha_s: float | None = None

    def __post_init__(self) -> None:
        # normalise types as well as check them: 550 and 550.0 (or numpy ints) must give the same cache key
        for name in ("n_jets_per_class", "jets_per_shard", "max_jets_per_event", "seed"):
            minimum = 0 if name == "seed" else 1
            check_int(name, getattr(self, name), minimum)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("pt_min", "pt_max", "eta_max", "jet_r", "pthat_min", "pthat_max", "fsr_alpha_s"):
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if not (isinstance(value, int | float | np.number) and not isinstance(value, bool)
                    and 0 < value < math.inf):
                raise DataError(f"{name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.mpi, bool):
            raise DataError(f"mpi must be true or false, got {self.mpi!r}")
        if self.fsr_alpha_s is not None and not 0.06 <= self.fsr_alpha_s <= 0.25:
            raise DataError(f"fsr_alpha_s must be in [0.06, 0.25] (Pythia's range), got {self.fsr_alpha_s}")
        if self.pt_min >= self.pt_max:
            raise DataError(f"pt_min ({self.pt_min}) must be below pt_max ({self.pt_max})")
        if self.pt_max > SQRT_S / 2:
            raise DataError(f"pt_max ({self.pt_max} GeV) is above sqrt(s)/2 = {SQRT_S / 2} GeV")
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
        for name, default in _UNHASHED_DEFAULTS.items():  # options added later: at their default, the cache
            if out[name] == default:                       # name of every earlier config stays the same
                del out[name]
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


def detector_from_mapping(options: Mapping) -> DetectorConfig:
    known = {f.name for f in fields(DetectorConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"unknown detector option(s) {unknown}; expected some of {sorted(known)}")
    return DetectorConfig(**options)


def check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
