"""Functional-complexity analysis of a trained model: the loss Hessian (operator, exact, Lanczos, trace, SLQ
density), pseudo-Goldstone modes, geometric complexity and compressibility.

Typical use (what the complexity stage does)::

    op = HessianOperator(model, eval_batches)                           # task loss, eval mode, a copy
    hess = analyze_hessian(op, options=HessianOptions(k=20, seed=0))    # .metrics: hessian_* names
    dirs = symmetry_directions(model, eval_batches, "lorentz", param_names=op.names)
    gold = goldstone_overlap(dirs, eigenvalues=hess.exact.eigenvalues, eigenvectors=hess.exact.eigenvectors)
    gc = geometric_complexity(model, eval_batches)
    comp = compressibility(model, test_batches)                         # .metrics(): prune_auc_at_*, quant_*
"""

from softsym.analysis.compress import (
    CompressionResult,
    apply_masks,
    compressibility,
    evaluate_auc,
    magnitude_prune,
    masked_finetune,
    model_bits,
    quantize_weights,
)
from softsym.analysis.curvature import HessianOperator, jet_task_loss
from softsym.analysis.density import SpectralDensity, quadrature_mass, spectral_density
from softsym.analysis.exact import ExactHessian, exact_hessian
from softsym.analysis.geometric import geometric_complexity
from softsym.analysis.goldstone.directions import (
    GoldstoneOverlap,
    SymmetryDirections,
    first_linear_layer,
    goldstone_overlap,
    symmetry_directions,
)
from softsym.analysis.lanczos import EigenPairs, LanczosResult, lanczos, lanczos_tridiagonal
from softsym.analysis.matvec import ParamBlock, TorchOperator, as_matvec, matvec_count, parameter_layout
from softsym.analysis.spectrum import (
    DEFAULT_EXACT_MAX_PARAMS,
    HessianAnalysis,
    HessianOptions,
    analyze_hessian,
    density_metrics,
    spectrum_metrics,
)
from softsym.analysis.trace import TraceEstimate, estimate_trace, hutchinson_trace, hutchpp_trace, xtrace

__all__ = [
    "DEFAULT_EXACT_MAX_PARAMS", "CompressionResult", "EigenPairs", "ExactHessian", "GoldstoneOverlap",
    "HessianAnalysis", "HessianOperator", "HessianOptions", "LanczosResult", "ParamBlock", "SpectralDensity",
    "SymmetryDirections", "TorchOperator", "TraceEstimate", "analyze_hessian", "apply_masks", "as_matvec",
    "compressibility", "density_metrics", "estimate_trace", "evaluate_auc", "exact_hessian", "first_linear_layer",
    "geometric_complexity", "goldstone_overlap", "hutchinson_trace", "hutchpp_trace", "jet_task_loss", "lanczos",
    "lanczos_tridiagonal", "magnitude_prune", "masked_finetune", "matvec_count", "model_bits", "parameter_layout",
    "quadrature_mass", "quantize_weights", "spectral_density", "spectrum_metrics", "symmetry_directions", "xtrace",
]
