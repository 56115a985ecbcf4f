"""Four-vectors, Lorentz generators and group elements, the symmetry registry, and jet features computed from
4-vectors."""

from softsym.physics.features import (
    KINEMATIC_FEATURES,
    N_KINEMATIC,
    FeatureJacobian,
    compute_features,
    feature_jacobian,
    jet_p4,
    pt_eta_phi,
)
from softsym.physics.lorentz import (
    act,
    axis_boost_generator,
    axis_rotation_generator,
    exp_generator,
    invariant_mass,
    jet_axis,
    lorentz_generators,
    minkowski_dot,
)
from softsym.physics.symmetries import SYMMETRIES, Symmetry, sample_group_elements, symmetry_generators

__all__ = [
    "KINEMATIC_FEATURES", "N_KINEMATIC", "act", "axis_boost_generator", "axis_rotation_generator",
    "FeatureJacobian", "compute_features", "exp_generator", "feature_jacobian", "invariant_mass", "jet_axis", "jet_p4",
    "lorentz_generators", "minkowski_dot", "pt_eta_phi", "SYMMETRIES", "Symmetry", "sample_group_elements",
    "symmetry_generators",
]
