"""Jet substructure from constituents: soft-drop mass and N-subjettiness, via FastJet contrib.

The scikit-hep ``fastjet`` wheel ships fjcontrib's ``SoftDrop`` and ``Nsubjettiness`` behind its awkward
interface, so both run in C++ over a whole batch of jets at once: each jet's constituents are handed to
FastJet as one "event", reclustered with Cambridge/Aachen into a single jet (what soft drop declusters),
and N-subjettiness is evaluated on the same constituents.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import fastjet
import numpy as np

# C/A radius for reclustering one jet's constituents: large enough that every constituent of an R=0.8
# (or wider) jet ends up in a single C/A jet, so exclusive_jets(1) is the whole jet.
_RECLUSTER_R = 10.0


@dataclass(frozen=True)
class Substructure:
    """Per-jet substructure observables, aligned with the input jets."""

    sdmass: np.ndarray  # [n_jets] soft-drop groomed mass (GeV)
    tau: np.ndarray     # [n_jets, n_tau] N-subjettiness tau_1 .. tau_{n_tau}


def jagged_p4(px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray, counts: np.ndarray) -> ak.Array:
    """Flat particle momenta, grouped by ``counts``, as the ``[group][particle]{px, py, pz, E}`` array that
    FastJet's awkward interface clusters group by group (built from the buffers, without copies)."""
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    columns = [ak.contents.NumpyArray(np.ascontiguousarray(x, dtype=np.float64)) for x in (px, py, pz, energy)]
    record = ak.contents.RecordArray(columns, ["px", "py", "pz", "E"], length=int(offsets[-1]))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))


def jet_substructure(
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    energy: np.ndarray,
    counts: np.ndarray,
    *,
    sd_beta: float = 0.0,
    sd_z_cut: float = 0.1,
    r0: float = 0.8,
    tau_beta: float = 1.0,
    n_tau: int = 4,
) -> Substructure:
    """Soft-drop mass and N-subjettiness tau_1..tau_n for a batch of jets.

    The constituents' momenta (GeV) are flat arrays, jet after jet, ``counts[j]`` of them for jet j (>= 1
    each). Soft drop (beta, z_cut, R0) follows Larkoski et al. with the scalar pT-fraction symmetry measure
    and C/A declustering along the harder branch; N-subjettiness uses the normalised measure (beta, R0) with
    exclusive-kt axes, as in Thaler and Van Tilburg. A jet with at most N constituents has tau_N = 0.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n_jets = len(counts)
    if n_tau < 1:
        raise ValueError(f"n_tau must be >= 1, got {n_tau}")
    if n_jets == 0:
        return Substructure(np.zeros(0), np.zeros((0, n_tau)))
    if np.any(counts < 1):
        raise ValueError(f"{int(np.sum(counts < 1))} jets have no constituents; substructure needs >= 1")
    jets = jagged_p4(px, py, pz, energy, counts)
    sequence = fastjet.ClusterSequence(jets, fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_R))
    groomed = sequence.exclusive_jets_softdrop_grooming(
        njets=1, beta=sd_beta, symmetry_cut=sd_z_cut, symmetry_measure="scalar_z", R0=r0,
        recursion_choice="larger_pt",
    )
    sdmass = ak.to_numpy(groomed.msoftdrop).astype(np.float64)
    tau = ak.to_numpy(sequence.njettiness(
        measure_definition="NormalizedMeasure", axes_definition="KT_Axes",
        njets=list(range(1, n_tau + 1)), beta=tau_beta, R0=r0,
    )).astype(np.float64).reshape(n_jets, n_tau)
    return Substructure(sdmass=sdmass, tau=tau)
