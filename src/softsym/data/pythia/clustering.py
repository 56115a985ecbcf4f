"""From a batch of Pythia events to selected jets, vectorised over the whole batch.

Visible final-state particles, an optional detector response (``detector.py``), anti-kt clustering of all
events at once with FastJet's awkward interface, the jet selection (the leading jets of an event inside the
pT / |eta| window; a top jet must contain the b and both W quarks of one hadronic top within dR < R, as in
the public top-tagging reference dataset), and the substructure (soft-drop mass, N-subjettiness) of the
selected jets.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from softsym.data.pythia.config import GenerationConfig
from softsym.data.pythia.detector import (
    CHARGED_HADRON,
    ELECTRON,
    KIND_BRANCHES,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    Particles,
    apply_detector,
)

_NEUTRINOS = (12, 14, 16)


def jets_from_events(events: ak.Array, process: str, config: GenerationConfig, rng: np.random.Generator,
                     particle_data, charges: dict[int, int]) -> dict[str, np.ndarray]:
    import fastjet

    from softsym.physics.substructure import jagged_p4, jet_substructure

    n_events = len(events)
    record = _flat_record(events)
    pid, status, px, py, pz = (record[k] for k in ("pid", "status", "px", "py", "pz"))

    visible = (status > 0) & ~np.isin(np.abs(pid), _NEUTRINOS)
    visible &= np.hypot(px, py) > 0
    index = np.flatnonzero(visible)
    charge = _charges(pid[index], particle_data, charges)
    particles = Particles(record["event"][index], px[index], py[index], pz[index], record["energy"][index],
                          charge, _kinds(pid[index], charge))
    particles = particles.take(np.flatnonzero(np.abs(particles.eta) < config.particle_eta_max))
    if config.detector is not None:
        particles = apply_detector(particles, config.detector, rng)

    # anti-kt on all events of the batch at once; jets below pt_min are never candidates
    counts = np.bincount(particles.event, minlength=n_events)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    inputs = jagged_p4(particles.px, particles.py, particles.pz, particles.energy, counts)
    sequence = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_r))
    constituent_index = sequence.constituent_index(min_pt=config.pt_min)
    jets_per_event = ak.to_numpy(ak.num(constituent_index, axis=1))
    jet_event = np.repeat(np.arange(n_events), jets_per_event)
    n_constituents = ak.to_numpy(ak.flatten(ak.num(constituent_index, axis=2)))
    constituent = ak.to_numpy(ak.flatten(constituent_index, axis=None)).astype(np.int64)
    constituent += np.repeat(offsets[jet_event], n_constituents)
    constituent_jet = np.repeat(np.arange(len(jet_event)), n_constituents)

    # jets as the 4-vector sum of their constituents (E-scheme), so the written file is self-consistent
    jet = [np.bincount(constituent_jet, weights=getattr(particles, f)[constituent], minlength=len(jet_event))
           for f in ("px", "py", "pz", "energy")]
    jet_pt = np.hypot(jet[0], jet[1])
    jet_eta = np.arcsinh(jet[2] / np.maximum(jet_pt, 1e-12))
    jet_phi = np.arctan2(jet[1], jet[0])

    # the max_jets_per_event leading jets of each event, then the window (and, for tops, the matching)
    order = np.lexsort((-jet_pt, jet_event))
    first_of_event = np.concatenate([[0], np.cumsum(jets_per_event)])[jet_event[order]]
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - first_of_event
    selected = (rank < config.max_jets_per_event) & (jet_pt >= config.pt_min) & (jet_pt <= config.pt_max)
    selected &= np.abs(jet_eta) < config.eta_max
    if process == "ttbar":
        selected &= _matched_to_hadronic_top(jet_eta, jet_phi, jet_event, record, n_events, config.jet_r)
    chosen = np.flatnonzero(selected)

    # constituents of the chosen jets, grouped by jet and pT-sorted within it
    keep = selected[constituent_jet]
    new_jet = (np.cumsum(selected) - 1)[constituent_jet[keep]]
    part = particles.take(constituent[keep])
    order = np.lexsort((-part.pt, new_jet))
    part, new_jet = part.take(order), new_jet[order]
    counts_chosen = np.bincount(new_jet, minlength=len(chosen))

    sub = jet_substructure(part.px, part.py, part.pz, part.energy, counts_chosen)
    deta = part.eta - jet_eta[chosen][new_jet]
    dphi = _wrap(part.phi - jet_phi[chosen][new_jet])
    block = {
        "jet_pt": jet_pt[chosen], "jet_eta": jet_eta[chosen], "jet_phi": jet_phi[chosen],
        "jet_energy": jet[3][chosen], "jet_nparticles": counts_chosen, "jet_sdmass": sub.sdmass,
        **{f"jet_tau{n + 1}": sub.tau[:, n] for n in range(sub.tau.shape[1])},
        "part_px": part.px, "part_py": part.py, "part_pz": part.pz, "part_energy": part.energy,
        "part_deta": deta, "part_dphi": dphi, "part_charge": part.charge,
        **{name: (part.kind == kind) for kind, name in enumerate(KIND_BRANCHES)},
    }
    return block


def _charges(pid: np.ndarray, particle_data, cache: dict[int, int]) -> np.ndarray:
    """Electric charge (units of e) per particle, asking Pythia once per species."""
    species, inverse = np.unique(pid, return_inverse=True)
    for s in species.tolist():
        if s not in cache:
            cache[s] = round(particle_data.charge(s))
    return np.array([cache[s] for s in species.tolist()], np.int32)[inverse]


def _kinds(pid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    apid = np.abs(pid)
    kind = np.where(charge != 0, CHARGED_HADRON, NEUTRAL_HADRON)
    kind = np.where(pid == 22, PHOTON, kind)
    kind = np.where(apid == 11, ELECTRON, kind)
    kind = np.where(apid == 13, MUON, kind)
    return kind.astype(np.int8)


def _flat_record(events: ak.Array) -> dict[str, np.ndarray]:
    """The full event records of a batch as flat numpy arrays (``mother`` as an index into them)."""
    record = events.prt
    counts = ak.to_numpy(ak.num(record))
    event = np.repeat(np.arange(len(counts)), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])[:-1]
    flat = {"event": event,
            "pid": ak.to_numpy(ak.flatten(record.id)).astype(np.int64),
            "status": ak.to_numpy(ak.flatten(record.status)),
            "mother": ak.to_numpy(ak.flatten(record.mother1)).astype(np.int64) + offsets[event]}
    momentum = record.p
    for name, source in (("px", "px"), ("py", "py"), ("pz", "pz"), ("energy", "e")):
        flat[name] = ak.to_numpy(ak.flatten(momentum[source]))
    return flat


def _matched_to_hadronic_top(jet_eta: np.ndarray, jet_phi: np.ndarray, jet_event: np.ndarray,
                             record: dict[str, np.ndarray], n_events: int, radius: float) -> np.ndarray:
    """Whether each jet contains (dR < radius) the b and both W-decay quarks of one of the event's tops.

    The top decay quarks are the outgoing partons (|status| 23) of a quark flavour whose mother is a top
    (the b) or a W (the two W quarks); the mother's sign says which top they came from.
    """
    pid, status = record["pid"], record["status"]
    mother_pid = pid[record["mother"]]
    apid = np.abs(pid)
    is_decay_quark = (apid >= 1) & (apid <= 5) & (np.abs(status) == 23)
    is_decay_quark &= (np.abs(mother_pid) == 6) | (np.abs(mother_pid) == 24)
    index = np.flatnonzero(is_decay_quark)  # grouped by event, as the record is
    slot = record["event"][index] * 2 + (mother_pid[index] < 0)  # per event: 0 = t (W+), 1 = tbar (W-)
    order = np.argsort(slot, kind="stable")
    index, slot = index[order], slot[order]
    position = np.arange(len(slot)) - np.searchsorted(slot, slot)
    complete = (np.bincount(slot, minlength=2 * n_events) == 3)[slot]  # exactly b + 2 quarks, else unmatched
    index, slot, position = index[complete], slot[complete], position[complete]
    eta = np.full((2 * n_events, 3), np.nan)
    phi = np.full((2 * n_events, 3), np.nan)
    px, py, pz = record["px"][index], record["py"][index], record["pz"][index]
    eta[slot, position] = np.arcsinh(pz / np.hypot(px, py))
    phi[slot, position] = np.arctan2(py, px)
    eta, phi = eta.reshape(n_events, 2, 3), phi.reshape(n_events, 2, 3)
    d_eta = eta[jet_event] - jet_eta[:, None, None]
    d_phi = _wrap(phi[jet_event] - jet_phi[:, None, None])
    inside = np.hypot(d_eta, d_phi) < radius  # NaN (no complete top) compares False
    return np.any(np.all(inside, axis=2), axis=1)


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi
