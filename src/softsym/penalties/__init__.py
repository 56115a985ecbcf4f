"""Training penalties: the soft symmetry penalties (finite and infinitesimal forms) and the geometric-complexity
regulariser, built by name through ``PENALTIES.build(name, weight=..., **options)``."""

from softsym.penalties.geometric import GeometricComplexityPenalty
from softsym.penalties.registry import PENALTIES, Penalty
from softsym.penalties.symmetry import (
    FORMS,
    SymmetryPenalty,
    finite_penalty,
    generator_derivatives,
    infinitesimal_penalty,
    symmetry_violation,
)

__all__ = [
    "FORMS", "PENALTIES", "GeometricComplexityPenalty", "Penalty", "SymmetryPenalty", "finite_penalty",
    "generator_derivatives", "infinitesimal_penalty", "symmetry_violation",
]
