"""The fidelity learning curve: teacher–student decision agreement against optimiser steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from softsym.plotting import new_figure, save_figure, styled


def plot_fidelity_curves(curves: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path:
    """Agreement at ε_S = 0.5 against step, one line per student (``{label: [(step, agreement), ...]}``)."""
    with styled():
        fig, ax = new_figure(figsize=(8, 6))
        for label, curve in curves.items():
            steps, agreement = zip(*curve, strict=True)
            ax.plot(steps, agreement, marker="o", label=label)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(r"teacher–student agreement at $\varepsilon_S = 0.5$")
        ax.legend(fontsize="small")
        return save_figure(fig, path)
