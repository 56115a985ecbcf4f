"""Per-particle input features computed from 4-vectors, so a transformed jet yields consistent features.

The kinematic recipe (``KINEMATIC_FEATURES``) follows ParticleNet / ParT: Δη and Δφ to the jet axis,
log pT, log E, log pT/pT_jet, log E/E_jet and ΔR. Per-particle scalars that no spacetime symmetry touches
(charge, PID flags) are appended unchanged. Everything is differentiable torch, so the symmetry penalty
can push tangent vectors (JVPs) through it; padded particles give zero features and no NaN gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def _push_log_pt_eta_phi_e(p4: torch.Tensor, dp4: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Directional derivatives of (log pT, η, φ, log E) of ``p4 [..., 4]`` along ``dp4 [..., 4]``."""
    energy, px, py, pz = p4.unbind(-1)
    d_energy, d_px, d_py, d_pz = dp4.unbind(-1)
    inv_pt2 = 1.0 / (px * px + py * py)
    d_logpt = (px * d_px + py * d_py) * inv_pt2
    d_phi = (px * d_py - py * d_px) * inv_pt2
    d_eta = (d_pz - pz * d_logpt) * torch.rsqrt(px * px + py * py + pz * pz)  # η = asinh(pz / pT)
    return d_logpt, d_eta, d_phi, d_energy / energy


def _pull_log_pt_eta_phi_e(p4: torch.Tensor, g_logpt: torch.Tensor, g_eta: torch.Tensor, g_phi: torch.Tensor,
                           g_loge: torch.Tensor) -> torch.Tensor:
    """The transpose of ``_push_log_pt_eta_phi_e``: Σ g · ∂(log pT, η, φ, log E)/∂p4, shape ``[..., 4]``."""
    energy, px, py, pz = p4.unbind(-1)
    inv_pt2 = 1.0 / (px * px + py * py)
    inv_p = torch.rsqrt(px * px + py * py + pz * pz)
    radial = (g_logpt - g_eta * pz * inv_p) * inv_pt2
    return torch.stack([g_loge / energy, radial * px - g_phi * py * inv_pt2, radial * py + g_phi * px * inv_pt2,
                        g_eta * inv_p], dim=-1)


@dataclass(frozen=True)
class FeatureJacobian:
    """The derivative of ``compute_features`` with respect to the jets' 4-vectors, as two products.

    A particle's features depend on its own 4-vector and, through the jet axis and energy, on the jet's
    4-vector Σ_j p_j. The symmetry penalty needs the forward product (``push``) and the transposed one
    (``pull``) every training step; in closed form they cost a fraction of autograd through the ~40
    elementwise ops of the features. Scalar channels do not move; padded slots are zero.
    """

    p4: torch.Tensor  # [B, P, 4] with padded slots replaced by a harmless stand-in
    mask: torch.Tensor  # [B, P]
    jet: torch.Tensor  # [B, 4]
    deta: torch.Tensor  # [B, P]: Δη, Δφ and ΔR to the jet axis, unstandardised
    dphi: torch.Tensor
    delta_r: torch.Tensor
    n_features: int

    def push(self, dp4: torch.Tensor) -> torch.Tensor:
        """Feature tangents ``[..., B, P, F]`` along 4-vector tangents ``dp4 [..., B, P, 4]``."""
        m = self.mask.unsqueeze(-1)
        d_logpt, d_eta, d_phi, d_loge = _push_log_pt_eta_phi_e(self.p4, dp4)
        d_jet = (dp4 * m.to(dp4.dtype)).sum(-2)  # the action is linear: the jet's tangent is the sum
        jet_logpt, jet_eta, jet_phi, jet_loge = (t.unsqueeze(-1) for t in _push_log_pt_eta_phi_e(self.jet, d_jet))
        d_deta, d_dphi = d_eta - jet_eta, d_phi - jet_phi
        tangents = torch.stack([
            d_deta, d_dphi, d_logpt, d_loge, d_logpt - jet_logpt, d_loge - jet_loge,
            (self.deta * d_deta + self.dphi * d_dphi) / self.delta_r,
        ], dim=-1) * _feature_scale(dp4)
        tangents = torch.where(m, tangents, 0.0)
        return torch.nn.functional.pad(tangents, (0, self.n_features - N_KINEMATIC))

    def pull(self, grad_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂/∂p_i ``[B, P, 4]``, ∂/∂p_jet ``[B, 4]``) of Σ grad_features · features, ``grad_features [B, P, F]``."""
        g = torch.where(self.mask.unsqueeze(-1), grad_features[..., :N_KINEMATIC], 0.0)
        g = g * _feature_scale(g)
        g_deta = g[..., 0] + g[..., 6] * self.deta / self.delta_r
        g_dphi = g[..., 1] + g[..., 6] * self.dphi / self.delta_r
        g_logpt, g_loge = g[..., 2] + g[..., 4], g[..., 3] + g[..., 5]
        particle = _pull_log_pt_eta_phi_e(self.p4, g_logpt, g_deta, g_dphi, g_loge)
        jet = _pull_log_pt_eta_phi_e(self.jet, -g[..., 4].sum(-1), -g_deta.sum(-1), -g_dphi.sum(-1),
                                     -g[..., 5].sum(-1))
        return particle * self.mask.unsqueeze(-1).to(particle.dtype), jet


def _feature_scale(like: torch.Tensor) -> torch.Tensor:
    return like.new_tensor(FEATURE_SCALE)  # d(standardised)/d(raw)


def feature_jacobian(p4: torch.Tensor, mask: torch.Tensor, features: torch.Tensor) -> FeatureJacobian:
    """``FeatureJacobian`` of ``features = compute_features(p4, mask, ...)`` (tests pin it to autograd)."""
    raw = features[..., :N_KINEMATIC] / _feature_scale(features) + features.new_tensor(FEATURE_CENTRE)
    safe = torch.where(mask.unsqueeze(-1), p4, p4.new_tensor(_PAD_P4))
    return FeatureJacobian(safe, mask, jet_p4(p4, mask), raw[..., 0], raw[..., 1], raw[..., 6], features.shape[-1])
