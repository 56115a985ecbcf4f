"""PNG plots of the complexity analysis, in the project's figure style (``softsym.plotting``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from softsym.analysis.compress import CompressionResult
from softsym.analysis.density import SpectralDensity
from softsym.plotting import new_figure, save_figure, styled


def plot_spectrum(eigenvalues: np.ndarray, path: str | Path, *, near_zero_eps: float | None = None,
                  title: str = "Hessian spectrum") -> Path:
    """Eigenvalues by rank (symlog) and their histogram, with the near-zero band if ``near_zero_eps``."""
    with styled():
        lam = np.sort(np.asarray(eigenvalues))[::-1]
        fig, (ax1, ax2) = new_figure(1, 2, figsize=(10, 4))
        lmax = float(np.abs(lam).max()) if len(lam) else 1.0
        linthresh = max(1e-3 * lmax, 1e-12)
        ax1.plot(np.arange(1, len(lam) + 1), lam, ".", ms=2)
        ax1.set_yscale("symlog", linthresh=linthresh)
        ax1.set_xlabel("rank")
        ax1.set_ylabel("eigenvalue")
        ax1.set_title(title)
        edges = np.logspace(np.log10(linthresh), np.log10(lmax * 1.01), 40)
        ax2.hist(lam, bins=np.unique(np.concatenate([-edges[::-1], [0.0], edges])), log=True)
        ax2.set_xscale("symlog", linthresh=linthresh)
        ax2.set_xlabel("eigenvalue")
        ax2.set_ylabel("count")
        if near_zero_eps is not None:
            for ax, horizontal in ((ax1, True), (ax2, False)):
                thr = near_zero_eps * lmax
                (ax.axhspan if horizontal else ax.axvspan)(-thr, thr, color="orange", alpha=0.2,
                                                           label=f"|λ| < {near_zero_eps:g} λ_max")
            ax1.legend(loc="upper right")
        return save_figure(fig, path)


def plot_density(density: SpectralDensity, path: str | Path, *, title: str = "Hessian spectral density (SLQ)",
                 eigenvalues: np.ndarray | None = None) -> Path:
    """Smoothed density (log y) with the quadrature nodes as a rug; exact eigenvalues overlaid if given."""
    with styled():
        fig, ax = new_figure(figsize=(7, 4))
        ax.semilogy(density.grid, np.maximum(density.density, 1e-12), label=f"density (σ = {density.sigma:.3g})")
        ax.plot(density.nodes.reshape(-1), np.full(density.nodes.size, 1e-10), "|", color="k", alpha=0.3,
                label="quadrature nodes")
        if eigenvalues is not None:
            ax.hist(eigenvalues, bins=200, density=True, histtype="step", label="exact eigenvalues", alpha=0.7)
        ax.set_ylim(bottom=1e-11)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        ax.set_title(title)
        ax.legend()
        return save_figure(fig, path)


def plot_compression(result: CompressionResult, path: str | Path, *, title: str = "Compressibility") -> Path:
    """AUC against pruning sparsity, and against quantisation bits, with the 1% band."""
    with styled():
        fig, (ax1, ax2) = new_figure(1, 2, figsize=(10, 4))
        band = (1 - result.tolerance) * result.auc
        s = sorted(result.prune_auc)
        ax1.plot(s, [result.prune_auc[x] for x in s], "o-", label="magnitude pruning")
        for b in sorted({b for _, b in result.combined_auc}):
            xs = sorted(x for x, bb in result.combined_auc if bb == b)
            ax1.plot(xs, [result.combined_auc[(x, b)] for x in xs], ".--", label=f"pruning + {b}-bit")
        ax1.axhline(band, color="grey", ls=":", label=f"{result.tolerance:.0%} below original")
        ax1.set_xlabel("sparsity")
        ax1.set_ylabel("AUC")
        ax1.legend(fontsize=8)
        bits = sorted(result.quant_auc)
        ax2.plot(bits, [result.quant_auc[b] for b in bits], "o-", label="uniform quantisation")
        ax2.axhline(result.auc, color="k", lw=0.8, label="float32")
        ax2.axhline(band, color="grey", ls=":")
        ax2.set_xlabel("bits per weight")
        ax2.set_ylabel("AUC")
        ax2.set_title(f"smallest within {result.tolerance:.0%}: {result.compressed_config}, "
                      f"{result.compressed_bits} bits ({result.original_bits / max(result.compressed_bits, 1):.1f}×)",
                      fontsize=9)
        ax2.legend(fontsize=8)
        fig.suptitle(title)
        return save_figure(fig, path)
