"""Functional-complexity analysis of a trained model: the loss Hessian (operator, exact, Lanczos, trace, SLQ
density), pseudo-Goldstone modes, geometric complexity and compressibility.

Typical use (what the complexity stage does)::

    op = HessianOperator(model, eval_batches)                       # task loss, eval mode, a copy
    hess = analyze_hessian(op, method="auto", k=20, seed=0)         # .metrics: hessian_* names
    dirs = symmetry_directions(model, eval_batches, "lorentz", param_names=op.names)
    gold = goldstone_overlap(dirs, eigenvalues=hess.exact.eigenvalues, eigenvectors=hess.exact.eigenvectors)
    gc = geometric_complexity(model, eval_batches)
    comp = compressibility(model, test_batches)                     # .metrics(): prune_auc_at_*, quant_auc_*
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
from softsym.analysis.density import SpectralDensity, quadrature_mass, spectral_density
from softsym.analysis.geometric import geometric_complexity, jet_input_gradient_norms
from softsym.analysis.goldstone import (
    GoldstoneOverlap,
    SymmetryDirections,
    first_linear_layer,
    goldstone_overlap,
    symmetry_directions,
)
from softsym.analysis.hessian import (
    ExactHessian,
    HessianOperator,
    ParamBlock,
    exact_hessian,
    jet_task_loss,
    parameter_layout,
)
from softsym.analysis.lanczos import EigenPairs, LanczosResult, lanczos, lanczos_tridiagonal
from softsym.analysis.spectrum import (
    DEFAULT_EXACT_MAX_PARAMS,
    HessianAnalysis,
    analyze_hessian,
    density_metrics,
    spectrum_metrics,
)
from softsym.analysis.trace import TraceEstimate, estimate_trace, hutchinson_trace, hutchpp_trace, xtrace

__all__ = [
    "DEFAULT_EXACT_MAX_PARAMS", "CompressionResult", "EigenPairs", "ExactHessian", "GoldstoneOverlap",
    "HessianAnalysis", "HessianOperator", "LanczosResult", "ParamBlock", "SpectralDensity", "SymmetryDirections",
    "TraceEstimate", "analyze_hessian", "apply_masks", "compressibility", "density_metrics", "estimate_trace",
    "evaluate_auc", "exact_hessian", "first_linear_layer", "geometric_complexity", "goldstone_overlap",
    "hutchinson_trace", "hutchpp_trace", "jet_input_gradient_norms", "jet_task_loss", "lanczos",
    "lanczos_tridiagonal", "magnitude_prune", "masked_finetune", "model_bits", "parameter_layout", "quadrature_mass",
    "quantize_weights", "spectral_density", "spectrum_metrics", "symmetry_directions", "xtrace",
]
