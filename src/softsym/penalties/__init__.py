"""Soft symmetry penalties (finite and infinitesimal forms) and the registry the train stage uses."""

from softsym.penalties.symmetry import (
    FORMS,
    SYMMETRIES,
    SymmetryPenalty,
    finite_penalty,
    generator_jvps,
    infinitesimal_penalty,
    sample_group_elements,
    symmetry_generators,
    symmetry_violation,
)

__all__ = [
    "FORMS", "SYMMETRIES", "SymmetryPenalty", "finite_penalty", "generator_jvps", "infinitesimal_penalty",
    "sample_group_elements", "symmetry_generators", "symmetry_violation",
]
