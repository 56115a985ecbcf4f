"""Per-particle input features computed from 4-vectors, so a transformed jet yields consistent features.

The kinematic recipe (``KINEMATIC_FEATURES``) follows ParticleNet / ParT: Δη and Δφ to the jet axis,
log pT, log E, log pT/pT_jet, log E/E_jet and ΔR. Per-particle scalars that no spacetime symmetry touches
(charge, PID flags) are appended unchanged. Everything is differentiable torch, so the symmetry penalty
can push tangent vectors (JVPs) through it; padded particles give zero features and no NaN gradients.
"""

from __future__ import annotations

import math

import torch

KINEMATIC_FEATURES = ("part_deta", "part_dphi", "part_logpt", "part_loge", "part_logptrel",
                      "part_logerel", "part_deltaR")
N_KINEMATIC = len(KINEMATIC_FEATURES)
# Fixed affine standardisation (x - centre) * scale, the values of weaver-core's JetClass/top-tagging
# input configs: it puts every feature at O(1) for jets of a few hundred GeV without data-dependent
# statistics, so a transformed jet is standardised exactly like the original.
FEATURE_CENTRE = (0.0, 0.0, 1.7, 2.0, -4.7, -4.7, 0.2)
FEATURE_SCALE = (1.0, 1.0, 0.7, 0.7, 0.7, 0.7, 4.0)

# A harmless stand-in 4-vector for padded slots: keeps log/atan2/sqrt away from 0 so that the masked
# branch of torch.where never produces inf/NaN gradients.
_PAD_P4 = (1.0, 1.0, 0.0, 0.0)


def wrap_phi(dphi: torch.Tensor) -> torch.Tensor:
    """Map angles to [-π, π)."""
    return torch.remainder(dphi + math.pi, 2 * math.pi) - math.pi


def pt_eta_phi(p4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Transverse momentum, pseudorapidity and azimuth of 4-vectors ``[..., 4]`` (E, px, py, pz)."""
    px, py, pz = p4[..., 1], p4[..., 2], p4[..., 3]
    pt = torch.hypot(px, py)
    return pt, torch.asinh(pz / pt), torch.atan2(py, px)


def jet_p4(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the real constituents' 4-vectors, ``[..., 4]``."""
    return (p4 * mask.unsqueeze(-1).to(p4.dtype)).sum(-2)


def kinematic_features(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The 7 standardised kinematic features ``[..., P, 7]``; zero where ``mask`` is False."""
    m = mask.unsqueeze(-1)
    safe = torch.where(m, p4, p4.new_tensor(_PAD_P4))
    jet = jet_p4(p4, mask)
    jet_pt, jet_eta, jet_phi = pt_eta_phi(jet)
    pt, eta, phi = pt_eta_phi(safe)
    energy = safe[..., 0].clamp_min(1e-6)
    deta = eta - jet_eta.unsqueeze(-1)
    dphi = wrap_phi(phi - jet_phi.unsqueeze(-1))
    logpt = torch.log(pt.clamp_min(1e-6))
    loge = torch.log(energy)
    feats = torch.stack([
        deta,
        dphi,
        logpt,
        loge,
        logpt - torch.log(jet_pt.clamp_min(1e-6)).unsqueeze(-1),
        loge - torch.log(jet[..., 0].clamp_min(1e-6)).unsqueeze(-1),
        torch.sqrt(deta * deta + dphi * dphi + 1e-12),
    ], dim=-1)
    feats = (feats - feats.new_tensor(FEATURE_CENTRE)) * feats.new_tensor(FEATURE_SCALE)
    return torch.where(m, feats, feats.new_zeros(()))


def compute_features(p4: torch.Tensor, mask: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
    """Model inputs ``[..., P, 7 + S]``: kinematic features from ``p4`` plus symmetry-neutral ``scalars``."""
    feats = kinematic_features(p4, mask)
    if scalars is not None and scalars.shape[-1] > 0:
        feats = torch.cat([feats, scalars * mask.unsqueeze(-1).to(scalars.dtype)], dim=-1)
    return feats
