"""Soft-drop mass and N-subjettiness (FastJet contrib via the awkward interface) against a slow reference."""

import awkward as ak
import numpy as np
import pytest

from softsym.physics.substructure import jagged_p4, jet_substructure


def _p4(pt, eta, phi, mass=0.0):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.array([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)])


def _substructure(jets, **options):
    flat = np.array([p for jet in jets for p in jet]).reshape(-1, 4)
    return jet_substructure(*flat.T, np.array([len(jet) for jet in jets]), **options)


def _mass(p):
    return float(np.sqrt(max(p[3] ** 2 - p[0] ** 2 - p[1] ** 2 - p[2] ** 2, 0.0)))


def _pt(p):
    return float(np.hypot(p[0], p[1]))


def _y_phi(p):
    return 0.5 * np.log((p[3] + p[2]) / (p[3] - p[2])), np.arctan2(p[1], p[0])


def _dr2(a, b):
    (ya, pa), (yb, pb) = _y_phi(a), _y_phi(b)
    dphi = (pa - pb + np.pi) % (2 * np.pi) - np.pi
    return (ya - yb) ** 2 + dphi**2


def _cluster(particles, power, n_final=1):
    """Generalised-kt pairwise clustering without beam distance (large R); returns final nodes as trees."""
    nodes = [(p, None) for p in particles]  # (p4, children)
    while len(nodes) > n_final:
        best = None
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                pi, pj = nodes[i][0], nodes[j][0]
                d = min(_pt(pi) ** (2 * power), _pt(pj) ** (2 * power)) * _dr2(pi, pj)
                if best is None or d < best[0]:
                    best = (d, i, j)
        _, i, j = best
        merged = (nodes[i][0] + nodes[j][0], (nodes[i], nodes[j]))
        nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [merged]
    return nodes


def _reference_sdmass(particles, z_cut=0.1):
    node = _cluster(particles, power=0)[0]  # Cambridge/Aachen
    while node[1] is not None:
        a, b = node[1]
        pa, pb = _pt(a[0]), _pt(b[0])
        if min(pa, pb) / (pa + pb) > z_cut:
            return _mass(node[0])
        node = a if pa > pb else b
    return _mass(node[0])


def _reference_tau(particles, n, r0=0.8):
    if len(particles) <= n:
        return 0.0
    axes = [node[0] for node in _cluster(particles, power=1, n_final=n)]  # exclusive kt axes
    numerator = sum(_pt(p) * min(np.sqrt(_dr2(p, a)) for a in axes) for p in particles)
    return numerator / (sum(_pt(p) for p in particles) * r0)


def _random_jets(n_jets, seed):
    rng = np.random.default_rng(seed)
    jets = []
    for _ in range(n_jets):
        n = int(rng.integers(2, 16))
        pt = rng.exponential(30.0, n) + 0.5
        eta = 0.7 + rng.normal(0.0, 0.25, n)
        phi = 3.0 + rng.normal(0.0, 0.25, n)  # near the phi = +-pi seam, to exercise the wrap
        mass = np.where(rng.random(n) < 0.5, 0.0, 0.14)
        jets.append([_p4(*args) for args in zip(pt, eta, phi, mass, strict=True)])
    return jets


def test_soft_drop_mass_matches_reference_declustering():
    jets = _random_jets(25, seed=3)
    result = _substructure(jets)
    expected = np.array([_reference_sdmass(j) for j in jets])
    np.testing.assert_allclose(result.sdmass, expected, rtol=1e-6, atol=1e-6)


def test_n_subjettiness_matches_reference_with_exclusive_kt_axes():
    jets = _random_jets(15, seed=4)
    result = _substructure(jets, n_tau=3)
    expected = np.array([[_reference_tau(j, n) for n in (1, 2, 3)] for j in jets])
    np.testing.assert_allclose(result.tau, expected, rtol=1e-6, atol=1e-9)


def test_soft_drop_removes_soft_wide_angle_radiation():
    prongs = [_p4(300, 0.0, 0.0), _p4(200, 0.3, 0.2)]
    two_prong_mass = _mass(prongs[0] + prongs[1])
    jets = [prongs, prongs + [_p4(5, 0.6, -0.5)], [_p4(500, 0.1, 0.1)]]
    result = _substructure(jets)
    assert result.sdmass[0] == pytest.approx(two_prong_mass, rel=1e-9)
    assert result.sdmass[1] == pytest.approx(two_prong_mass, rel=1e-9)  # the soft particle is groomed away
    assert _mass(sum(jets[1])) > two_prong_mass + 5  # ... although it adds to the plain mass
    assert result.sdmass[2] == pytest.approx(0.0, abs=1e-3)
    # N particles are described exactly by N axes; tau_N is non-increasing in N
    np.testing.assert_allclose(result.tau[0, 1:], 0.0, atol=1e-12)
    np.testing.assert_allclose(result.tau[2], 0.0, atol=1e-12)
    assert np.all(np.diff(result.tau[1]) <= 1e-12)


def test_empty_input_and_jets_without_constituents():
    empty = _substructure([])
    assert empty.sdmass.shape == (0,) and empty.tau.shape == (0, 4)
    with pytest.raises(ValueError, match="no constituents"):
        jet_substructure(np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), np.array([1, 0]))


def test_jagged_p4_groups_flat_momenta():
    jets = jagged_p4(np.arange(5.0), np.zeros(5), np.zeros(5), np.arange(5.0) + 1, np.array([2, 0, 3]))
    assert ak.num(jets).tolist() == [2, 0, 3]
    assert jets.fields == ["px", "py", "pz", "E"]
    assert jets[2].px.tolist() == [2.0, 3.0, 4.0]
