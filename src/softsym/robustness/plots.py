"""Robustness-curve figures: AUC and mean |Δ output| against strength, several models overlaid, in the
project's figure style (``softsym.plotting``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from softsym.plotting import new_figure, save_figure, styled
from softsym.robustness.evaluate import RobustnessResult

Results = RobustnessResult | Mapping[str, RobustnessResult]


def _as_labelled(results: Results) -> Mapping[str, RobustnessResult]:
    return {"model": results} if isinstance(results, RobustnessResult) else results


def plot_robustness_curve(results: Results, perturbation: str, path: Path) -> Path:
    """AUC (top) and mean |Δ p_signal| (bottom) against strength for one perturbation; one line per model
    (``{label: result}``), the AURC in the legend. Models without this perturbation are skipped."""
    labelled = {label: r for label, r in _as_labelled(results).items() if perturbation in r.curves}
    if not labelled:
        raise ValueError(f"no result holds a curve for perturbation {perturbation!r}")
    with styled():
        fig, (ax_auc, ax_dout) = new_figure(2, 1, figsize=(8, 8), sharex=True, height_ratios=(2, 1))
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
