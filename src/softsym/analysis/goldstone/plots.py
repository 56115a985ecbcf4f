"""The loss profiles along the symmetry directions against random directions (``LossProfiles``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from softsym.analysis.goldstone.curvature import LossProfiles
from softsym.plotting import new_figure, save_figure, styled


def plot_loss_profiles(profiles: LossProfiles, path: str | Path) -> Path:
    """L(θ + t·d) − L(θ) against t: one line per symmetry direction, the random directions' range shaded
    and their median dashed."""
    with styled():
        fig, ax = new_figure()
        if len(profiles.random):
            low, mid, high = np.quantile(profiles.random, [0.0, 0.5, 1.0], axis=0)
            ax.fill_between(profiles.t, low, high, color="0.85", label=f"random ({len(profiles.random)}), range")
            ax.plot(profiles.t, mid, color="0.4", ls="--", label="random, median")
        for name, curve in zip(profiles.generator_names, profiles.symmetry, strict=False):
            ax.plot(profiles.t, curve, label=name)
        ax.set_xlabel("t (unit directions in parameter space)")
        ax.set_ylabel(r"$L(\theta + t\,\hat d) - L(\theta)$")
        ax.legend(fontsize="x-small", ncol=2)
        return save_figure(fig, path)
