"""Robustness curves: a model's metrics on perturbed test jets over a grid of strengths, and their summary.

For every perturbation and strength s: the AUC and the background rejection 1/ε_B at ε_S = 0.5 of the
perturbed jets, and the mean |Δ output| = mean over jets of |p_signal(perturbed) − p_signal(clean)|. The
signal score is the train stage's: p(signal) for two classes, 1 − p(QCD) ("any signal vs QCD") otherwise, so the
clean values are the train stage's ``test_auc`` / ``test_rej50`` on the same jets.

The area under the robustness curve (AURC) of a perturbation is the trapezoid integral of AUC over its
strength grid divided by the grid's span, i.e. the AUC averaged over the scanned strengths (a model whose AUC
never moves has AURC = its clean AUC; a single-point grid gives that point's AUC).

Endpoints (``softsym.robustness.endpoints``, each with its DeLong error): ``<name>_auc_loss`` = clean AUC −
mean AUC over the non-zero strengths; ``outside_auc_loss`` = the mean of those losses over the physical
perturbations outside the penalised symmetry's group (the primary robustness endpoint), ``inside_auc_loss``
the same inside it; ``outside_auc_loss_<symmetry>`` (and ``inside_``) the same for each symmetry of
``SYMMETRIES``, whatever the run's own. With a cone (``jet_radius``), ``<name>_dropped_frac_<strength>`` is
the fraction of the real particles dropped for leaving it.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from softsym.data.jets import JetBatch
from softsym.models.base import logits_from_p4
from softsym.physics.symmetries import SYMMETRIES
from softsym.robustness.endpoints import auc_loss, mean_auc_loss
from softsym.robustness.perturbations import INSIDE, OUTSIDE, PERTURBATIONS, MomentumPerturbation, Perturbation
from softsym.training.metrics import binary_metrics, probabilities


@dataclass(frozen=True)
class PerturbationScan:
    """One perturbation and the strengths it is evaluated at."""

    perturbation: Perturbation
    strengths: tuple[float, ...]

    @property
    def name(self) -> str:
        return self.perturbation.name


def scans_from_config(perturbations: Mapping[str, Mapping[str, Any]], *,
                      jet_radius: float | None = None) -> list[PerturbationScan]:
    """Scans from the ``robustness.perturbations`` mapping (plain dicts):
    ``{name: {strengths: [...], **options}}``, the options being the perturbation's constructor arguments
    (``PERTURBATIONS.build(name, **options)``). ``jet_radius``: the cone of every 4-vector perturbation
    that does not set its own."""
    scans = []
    for name, entry in perturbations.items():
        options = dict(entry)
        if (jet_radius is not None and "jet_radius" not in options and name in PERTURBATIONS
                and issubclass(PERTURBATIONS.get(name), MomentumPerturbation)):
            options["jet_radius"] = jet_radius
        if "strengths" not in options or len(options["strengths"]) == 0:
            raise ValueError(f"robustness.perturbations.{name} needs a non-empty `strengths` list, "
                             f"got {entry}")
        strengths = tuple(float(s) for s in options.pop("strengths"))
        try:
            perturbation = PERTURBATIONS.build(name, **options)
        except TypeError as err:
            raise ValueError(f"perturbation {name!r}: bad options {sorted(options)} ({err})") from None
        scans.append(PerturbationScan(perturbation, strengths))
    return scans


def format_strength(strength: float) -> str:
    """A strength as it appears in metric names: short float form, MLflow-safe (letters, digits, ``_-./``)."""
    return re.sub(r"[^A-Za-z0-9_\-./]", "_", f"{strength:g}".replace("+", ""))


def signal_score(logits: torch.Tensor) -> torch.Tensor:
    """p(signal) ``[B]``: the signal probability for one logit, 1 − p(class 0 = QCD) for several classes."""
    probs = probabilities(logits)
    return probs[:, 1] if probs.shape[1] == 2 else 1 - probs[:, 0]


def area_under_robustness_curve(strengths: Sequence[float], aucs: Sequence[float]) -> float:
    """Trapezoid integral of AUC over the strengths divided by their span (the mean AUC over the scan)."""
    order = np.argsort(strengths)
    s, a = np.asarray(strengths, float)[order], np.asarray(aucs, float)[order]
    span = s[-1] - s[0]
    return float(a.mean()) if span == 0 else float(np.trapezoid(a, s) / span)


@dataclass(frozen=True)
class RobustnessPoint:
    strength: float
    auc: float
    rej50: float  # 1/ε_B at ε_S = 0.5
    dout: float   # mean |p_signal(perturbed) − p_signal(clean)|
    dropped_frac: float = 0.0  # fraction of the real particles dropped for leaving the jet cone


@dataclass(frozen=True)
class RobustnessCurve:
    perturbation: str
    strength_label: str
    points: tuple[RobustnessPoint, ...]
    relation: str = OUTSIDE     # inside | outside the penalised symmetry's group
    physical: bool = True       # a physical shift (not a feature-space perturbation or a worst case)
    has_cone: bool = False      # particles leaving the jet cone are dropped
    auc_loss: float = 0.0       # clean AUC − mean AUC over the non-zero strengths
    auc_loss_se: float = 0.0

    @property
    def strengths(self) -> list[float]:
        return [p.strength for p in self.points]

    @property
    def aurc(self) -> float:
        return area_under_robustness_curve(self.strengths, [p.auc for p in self.points])


@dataclass(frozen=True)
class RobustnessResult:
    """Clean metrics and one curve per perturbation, for one model on one test set."""

    clean_auc: float
    clean_rej50: float
    curves: dict[str, RobustnessCurve]
    symmetry: str | None = None  # the penalised symmetry that ``inside`` / ``outside`` refer to
    endpoints: dict[str, float] = dataclasses.field(default_factory=dict)

    def metrics(self, prefix: str = "robust_") -> dict[str, float]:
        """``<prefix><perturbation>_{auc,rej50,dout}_<strength>`` per point (and ``_dropped_frac_<strength>``
        with a cone), ``<prefix><perturbation>_{aurc,auc_loss,auc_loss_se,inside}`` per perturbation, and the
        endpoints ``<prefix>{outside,inside}_auc_loss`` (+ ``_se``, ``_n``), also per symmetry
        (``<prefix>outside_auc_loss_<symmetry>``, ...)."""
        out: dict[str, float] = {}
        for name, curve in self.curves.items():
            for p in curve.points:
                s = format_strength(p.strength)
                out[f"{prefix}{name}_auc_{s}"] = p.auc
                out[f"{prefix}{name}_rej50_{s}"] = p.rej50
                out[f"{prefix}{name}_dout_{s}"] = p.dout
                if curve.has_cone:
                    out[f"{prefix}{name}_dropped_frac_{s}"] = p.dropped_frac
            out[f"{prefix}{name}_aurc"] = curve.aurc
            out[f"{prefix}{name}_auc_loss"] = curve.auc_loss
            out[f"{prefix}{name}_auc_loss_se"] = curve.auc_loss_se
            out[f"{prefix}{name}_inside"] = float(curve.relation == INSIDE)
        out.update({f"{prefix}{k}": v for k, v in self.endpoints.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the stage's artifact), with each curve's AURC."""
        out = dataclasses.asdict(self)
        for name, curve in self.curves.items():
            out["curves"][name]["aurc"] = curve.aurc
        return out


def scan_rng(seed: int, perturbation: str, strength: float) -> torch.Generator:
    """The random stream of one (perturbation, strength): independent of the other scans and of the rest of
    the grid, so every model and every run with the same seed and test batches sees the same perturbed jets."""
    stream = zlib.crc32(f"{perturbation}/{format_strength(strength)}".encode())
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def evaluate_robustness(model: nn.Module, batches: Iterable[JetBatch], scans: Sequence[PerturbationScan], *,
                        seed: int = 0, symmetry: str | None = None) -> RobustnessResult:
    """Metrics of ``model`` on ``batches`` (the test set, iterated once) under every scan; ``symmetry`` is
    the penalised (or measured) symmetry that decides which perturbations lie inside its group.

    Strength 0 reuses the clean scores, so it reproduces the clean metrics exactly. The attacks compute their
    own input gradients; nothing else builds a graph and the model's parameters get no gradients.
    """
    model.eval()
    device = next(model.parameters()).device
    rngs = {(scan.name, i): scan_rng(seed, scan.name, strength)
            for scan in scans for i, strength in enumerate(scan.strengths)}
    clean_scores: list[torch.Tensor] = []
    truths: list[torch.Tensor] = []
    perturbed: dict[tuple[str, int], list[torch.Tensor]] = {key: [] for key in rngs}
    dropped = dict.fromkeys(rngs, 0)
    n_particles = 0
    with torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            clean = signal_score(logits_from_p4(model, batch.p4, batch.mask, batch.scalars))
            clean_scores.append(clean.cpu())
            truths.append((batch.labels != 0).cpu())
            n_particles += int(batch.mask.sum())
            for scan in scans:
                for i, strength in enumerate(scan.strengths):
                    key = (scan.name, i)
                    if strength == 0:
                        scores = clean
                    else:
                        logits, n_dropped = scan.perturbation.perturbed(model, batch, strength, rngs[key])
                        scores = signal_score(logits)
                        dropped[key] += int(n_dropped.sum())
                    perturbed[key].append(scores.cpu())
    truth = torch.cat(truths).numpy().astype(int)
    clean_all = torch.cat(clean_scores).double().numpy()
    clean_metrics = binary_metrics(truth, clean_all)
    curves, shifted = {}, {}
    for scan in scans:
        points = []
        shifted[scan.name] = []
        for i, strength in enumerate(scan.strengths):
            scores = torch.cat(perturbed[(scan.name, i)]).double().numpy()
            m = binary_metrics(truth, scores)
            dout = float(np.abs(scores - clean_all).mean())
            points.append(RobustnessPoint(strength, m["auc"], m["rej50"], dout,
                                          dropped[(scan.name, i)] / max(n_particles, 1)))
            if strength != 0:
                shifted[scan.name].append(scores)
        loss, loss_se = auc_loss(truth, clean_all, shifted[scan.name]) if shifted[scan.name] else (0.0, 0.0)
        p = scan.perturbation
        curves[scan.name] = RobustnessCurve(scan.name, p.strength_label, tuple(points), p.relation(symmetry),
                                            p.physical, getattr(p, "jet_radius", None) is not None, loss, loss_se)
    by_name = {scan.name: scan.perturbation for scan in scans}
    losses: dict[tuple[str, ...], tuple[float, float]] = {}  # one DeLong pass per distinct set of members

    def group_endpoints(of: str | None, suffix: str = "") -> dict[str, float]:
        out = {}
        for relation in (OUTSIDE, INSIDE):
            members = tuple(name for name, c in curves.items()
                            if c.physical and by_name[name].relation(of) == relation and shifted[name])
            if members:
                if members not in losses:
                    losses[members] = mean_auc_loss(truth, clean_all, [shifted[name] for name in members])
                value, se = losses[members]
                out.update({f"{relation}_auc_loss{suffix}": value, f"{relation}_auc_loss{suffix}_se": se,
                            f"{relation}_n{suffix}": float(len(members))})
        return out

    # Also classed by every symmetry, so that a rotation-penalised run and its baseline are compared on the same
    # perturbations (``outside_auc_loss_rotation``), whatever symmetry each run measures by default.
    endpoints = group_endpoints(symmetry)
    for other in SYMMETRIES.names():
        endpoints.update(group_endpoints(other, f"_{other}"))
    return RobustnessResult(clean_metrics["auc"], clean_metrics["rej50"], curves, symmetry, endpoints)
