"""The one figure style and saver: mplhep's style in a context (global matplotlib settings never change),
Agg canvas (no display), atomic PNG writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.style
import mplhep
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from softsym.atomic import atomic_path

STYLE = mplhep.style.CMS
DPI = 110


@contextmanager
def styled() -> Iterator[None]:
    """Every figure of the project is drawn inside this context."""
    with matplotlib.style.context(STYLE):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **subplot_kw):
    """(figure, axes) in the project's style, with no pyplot global state; draw inside ``styled()``."""
    fig = Figure(figsize=figsize or (8 * ncols, 6 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **subplot_kw)
    return fig, axes


def save_figure(fig: Figure, path: str | Path) -> Path:
    """PNG, tight bounding box, written atomically."""
    path = Path(path)
    with atomic_path(path.with_suffix(".png") if path.suffix != ".png" else path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    return path
