"""Soft symmetry penalties (finite and infinitesimal forms) and the registry the train stage uses."""

from softsym.penalties.symmetry import (
    FORMS,
    SYMMETRIES,
    SymmetryPenalty,
    finite_penalty,
    generator_derivatives,
    infinitesimal_penalty,
    sample_group_elements,
    symmetry_generators,
    symmetry_violation,
)

__all__ = [
    "FORMS", "SYMMETRIES", "SymmetryPenalty", "finite_penalty", "generator_derivatives", "infinitesimal_penalty",
    "sample_group_elements", "symmetry_generators", "symmetry_violation",
]


def build_penalty(name: str, *, symmetry: str = "lorentz", form: str = "infinitesimal", weight: float = 0.0,
                  **options):
    """The penalty of config group ``penalty``: None for ``none``, else a callable with a ``weight``."""
    if name == "none":
        return None
    if name == "gc":
        from softsym.penalties.geometric import GeometricComplexityPenalty

        return GeometricComplexityPenalty(weight=weight)
    if name in SYMMETRIES:
        return SymmetryPenalty(symmetry, form, weight, **options)
    raise ValueError(f"unknown penalty {name!r}; expected one of {('none', 'gc', *SYMMETRIES)}")


__all__ += ["build_penalty"]
