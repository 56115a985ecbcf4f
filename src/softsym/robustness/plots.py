"""Robustness-curve figures: AUC and mean |Δ output| against strength, several models overlaid.

Figures are built as ``matplotlib.figure.Figure`` objects (Agg canvas, no pyplot state, no display needed)
inside an mplhep style context, so plotting never changes global matplotlib settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.style
import mplhep
from matplotlib.figure import Figure

from softsym.robustness.evaluate import RobustnessResult

STYLE = mplhep.style.CMS


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


Results = RobustnessResult | Mapping[str, RobustnessResult]


def _as_labelled(results: Results) -> Mapping[str, RobustnessResult]:
    return {"model": results} if isinstance(results, RobustnessResult) else results


def plot_robustness_curve(results: Results, perturbation: str, path: Path) -> Path:
    """AUC (top) and mean |Δ p_signal| (bottom) against strength for one perturbation; one line per model
    (``{label: result}``), the AURC in the legend. Models without this perturbation are skipped."""
    labelled = {label: r for label, r in _as_labelled(results).items() if perturbation in r.curves}
    if not labelled:
        raise ValueError(f"no result holds a curve for perturbation {perturbation!r}")
    with matplotlib.style.context(STYLE):
        fig = Figure(figsize=(8, 8))
        ax_auc, ax_dout = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
        for label, result in labelled.items():
            curve = result.curves[perturbation]
            ax_auc.plot(curve.strengths, [p.auc for p in curve.points], marker="o",
                        label=f"{label} (AURC {curve.aurc:.4f})")
            ax_dout.plot(curve.strengths, [p.dout for p in curve.points], marker="o")
        ax_auc.set_ylabel("AUC")
        ax_auc.set_title(perturbation, fontsize="medium")
        ax_auc.legend(fontsize="small")
        ax_dout.set_ylabel(r"mean $|\Delta p_\mathrm{signal}|$")
        ax_dout.set_xlabel(curve.strength_label)
        return save_figure(fig, path)


def plot_robustness_curves(results: Results, out_dir: Path) -> dict[str, Path]:
    """One figure per perturbation found in any result: ``<out_dir>/robust_<perturbation>.png``."""
    labelled = _as_labelled(results)
    names = list(dict.fromkeys(name for r in labelled.values() for name in r.curves))
    return {name: plot_robustness_curve(labelled, name, Path(out_dir) / f"robust_{name}.png")
            for name in names}
