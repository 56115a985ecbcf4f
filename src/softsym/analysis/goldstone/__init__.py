"""Pseudo-Goldstone modes: the parameter directions of a symmetry (``directions``), their function-level
check (``checks``), the curvature along them against random directions and the loss profiles
(``curvature``), the structural null space that is zero for reasons unrelated to the symmetry
(``null_space``), one call for the complexity stage (``analysis``) and the profile plot (``plots``)."""
