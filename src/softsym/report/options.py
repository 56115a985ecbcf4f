"""The report's options (``configs/report/default.yaml``, overridable as ``report.<key>=<value>``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from omegaconf import OmegaConf

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "report" / "default.yaml"
UNPAIRED_CHOICES = ("none", "welch")


@dataclass(frozen=True)
class PrimaryEndpoint:
    """The primary endpoint of one claim family: metric patterns, a fallback, and (robustness) whether only
    perturbations outside the penalised symmetry group count."""
    metrics: tuple[str, ...]
    otherwise: tuple[str, ...] = ()
    outside_penalised_group: bool = False

    def columns(self, columns: Iterable[str]) -> set[str]:
        columns = list(columns)
        found = {c for c in columns if any(fnmatchcase(c, p) for p in self.metrics)}
        return found or {c for c in columns if any(fnmatchcase(c, p) for p in self.otherwise)}


@dataclass(frozen=True)
class ReportOptions:
    alpha: float = 0.05
    matched_auc_tolerance: float = 0.01
    comparable_gc_factor: float = 1.5
    unpaired: str = "none"
    min_background_jets: int = 100
    bootstrap: int = 2000
    primary: Mapping[str, PrimaryEndpoint] = field(default_factory=dict)
    symmetry_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    correlation_complexity: tuple[str, ...] = ()
    correlation_outcomes: tuple[str, ...] = ()
    correlation_primary: tuple[str, ...] = ()

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError(f"report.alpha must lie in (0, 1), got {self.alpha}")
        if self.unpaired not in UNPAIRED_CHOICES:
            raise ValueError(f"report.unpaired must be one of {UNPAIRED_CHOICES}, got {self.unpaired!r}")
        if self.matched_auc_tolerance < 0:
            raise ValueError(f"report.matched_auc_tolerance must be >= 0, got {self.matched_auc_tolerance}")
        if not self.comparable_gc_factor > 1:
            raise ValueError(f"report.comparable_gc_factor must be > 1, got {self.comparable_gc_factor}")

    def is_primary(self, family: str, metric: str, columns: Iterable[str], penalty: str) -> bool:
        endpoint = self.primary.get(family)
        if endpoint is None or metric not in endpoint.columns(columns):
            return False
        if endpoint.outside_penalised_group and metric.startswith("robust_") and metric.endswith("_loss"):
            subject = metric[len("robust_"):].removesuffix("_loss").removesuffix("_auc")
            return subject not in self.symmetry_groups.get(penalty, ())
        return True

    def primary_statement(self) -> list[str]:
        lines = []
        for family, endpoint in self.primary.items():
            text = ", ".join(f"`{m}`" for m in endpoint.metrics)
            if endpoint.otherwise:
                text += " (else " + ", ".join(f"`{m}`" for m in endpoint.otherwise) + ")"
            if endpoint.outside_penalised_group:
                text += ", perturbations outside the penalised symmetry group only"
            lines.append(f"- {family}: {text}")
        return lines


def _tuple(value) -> tuple[str, ...]:
    return tuple(str(v) for v in (value or ()))


def load_options(path: Path | None = None, overrides: Sequence[str] = ()) -> ReportOptions:
    """Options from the yaml file (the packaged default when None) with ``report.<key>=<value>`` overrides."""
    path = DEFAULT_CONFIG if path is None else Path(path)
    base = OmegaConf.load(path) if path.exists() else OmegaConf.create({})
    bad = [o for o in overrides if not o.startswith("report.") or "=" not in o]
    if bad:
        raise ValueError(f"report overrides look like report.<key>=<value>, got {bad}")
    if overrides:
        dotlist = OmegaConf.from_dotlist([o[len("report."):] for o in overrides])
        base = OmegaConf.merge(base, dotlist)
    raw = OmegaConf.to_container(base, resolve=True)
    known = {"alpha", "matched_auc_tolerance", "comparable_gc_factor", "unpaired", "min_background_jets",
             "bootstrap", "primary", "symmetry_groups", "correlations"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown report option(s) {unknown}; expected {sorted(known)}")
    primary = {family: PrimaryEndpoint(_tuple(spec.get("metrics")), _tuple(spec.get("otherwise")),
                                       bool(spec.get("outside_penalised_group", False)))
               for family, spec in (raw.get("primary") or {}).items()}
    correlations = raw.get("correlations") or {}
    types = {"alpha": float, "matched_auc_tolerance": float, "comparable_gc_factor": float, "unpaired": str,
             "min_background_jets": int, "bootstrap": int}
    try:
        scalars = {k: kind(raw[k]) for k, kind in types.items() if k in raw}
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad report option: {err}") from None
    return ReportOptions(
        **scalars, primary=primary,
        symmetry_groups={k: _tuple(v) for k, v in (raw.get("symmetry_groups") or {}).items()},
        correlation_complexity=_tuple(correlations.get("complexity")),
        correlation_outcomes=_tuple(correlations.get("outcomes")),
        correlation_primary=_tuple(correlations.get("primary")),
    )
