"""What a model's first layers read for each particle: ``model.inputs`` = ``features`` | ``p4`` | ``p4_jet``.

- ``features`` (default): the relative features of ``softsym.physics.compute_features`` (Δη, Δφ, log pT, ...,
  then the scalars), unchanged.
- ``p4``: u = (E, px, py, pz) / ``p4_scale`` in the lab frame, then the invariant per-particle scalars (the
  feature columns after the kinematic ones: charge, PID flags). A Lorentz generator G acts on u linearly and
  exactly, as Ĝ = G on the four momentum columns and 0 on the scalars, the same matrix for every jet.
- ``p4_jet``: the same after rotating every jet so that its axis is z: u = (E, R p⃗) / ``p4_scale`` with R the
  rotation R_y(−θ) R_z(−φ) of the jet's 3-momentum onto z (θ, φ its polar and azimuthal angles; the new x axis
  points along the polar direction, y along the azimuthal one). The jet-axis rotation and the boost along
  the jet axis keep the jet's direction, so R does not move and they act on u exactly as J_z and K_z.

``ParticleInputs`` maps ``(features, p4, mask)`` to the per-particle input tensor ``[B, P, n_inputs]`` (zero at
padded slots for the 4-vector inputs) and, for the pseudo-Goldstone analysis, gives the action of 4-vector
generators on it (``input_generators``).
"""

from __future__ import annotations

import torch
from torch import nn

from softsym.physics.features import N_KINEMATIC

MODEL_INPUTS = ("features", "p4", "p4_jet")
# Constituent energies of the generated 550-650 GeV jets run from ~1 to a few hundred GeV: 100 GeV puts the
# 4-vector inputs at O(0.01 ... 5), the range of the standardised relative features.
DEFAULT_P4_SCALE = 100.0


def jet_frame_rotation(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rotation ``[B, 3, 3]`` (on column 3-vectors) that turns each jet's 3-momentum onto +z:
    R = R_y(−θ) R_z(−φ). Jets with no transverse momentum (empty ones included) get a finite matrix."""
    jet = (p4 * mask.unsqueeze(-1).to(p4.dtype)).sum(-2)[..., 1:]
    px, py, pz = jet.unbind(-1)
    tiny = torch.finfo(p4.dtype).tiny ** 0.5  # keeps the square roots differentiable at 0
    pt = torch.sqrt(px * px + py * py + tiny)
    p = torch.sqrt(pt * pt + pz * pz)
    cos_phi, sin_phi = px / pt, py / pt
    cos_theta, sin_theta = pz / p, pt / p
    zero = torch.zeros_like(px)
    rotate_z = torch.stack([torch.stack([cos_phi, sin_phi, zero], -1),
                            torch.stack([-sin_phi, cos_phi, zero], -1),
                            torch.stack([zero, zero, torch.ones_like(px)], -1)], -2)
    rotate_y = torch.stack([torch.stack([cos_theta, zero, -sin_theta], -1),
                            torch.stack([zero, torch.ones_like(px), zero], -1),
                            torch.stack([sin_theta, zero, cos_theta], -1)], -2)
    return rotate_y @ rotate_z


def jet_frame(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The 4x4 matrix M = diag(1, R) (``jet_frame_rotation``) of each jet, ``[B, 4, 4]``: p ↦ M p."""
    frame = torch.zeros(*p4.shape[:-2], 4, 4, dtype=p4.dtype, device=p4.device)
    frame[..., 0, 0] = 1.0
    frame[..., 1:, 1:] = jet_frame_rotation(p4, mask)
    return frame


class ParticleInputs(nn.Module):
    """The per-particle input tensor of a model (module docstring); no parameters, no buffers.

    ``n_features``: the width of the feature tensor the model is given (kinematic columns, then scalars);
    ``n_inputs``: the width of what it reads (``n_features`` for ``features``, 4 + scalars otherwise).
    """

    def __init__(self, inputs: str, n_features: int, p4_scale: float = DEFAULT_P4_SCALE) -> None:
        super().__init__()
        if inputs not in MODEL_INPUTS:
            raise ValueError(f"model.inputs={inputs!r} is unknown; expected one of {MODEL_INPUTS}")
        if inputs != "features" and n_features < N_KINEMATIC:
            raise ValueError(f"model.inputs={inputs} reads the scalar columns after the {N_KINEMATIC} kinematic "
                             f"ones; got n_features={n_features}")
        if not p4_scale > 0:
            raise ValueError(f"model.p4_scale must be > 0 (GeV), got {p4_scale}")
        self.inputs = inputs
        self.p4_scale = float(p4_scale)
        self.n_scalars = n_features - N_KINEMATIC
        self.n_inputs = n_features if inputs == "features" else 4 + self.n_scalars

    @property
    def reads_p4(self) -> bool:
        return self.inputs != "features"

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.inputs == "features":
            return features
        momenta = p4 / self.p4_scale
        if self.inputs == "p4_jet":
            momenta = momenta @ jet_frame(p4, mask).transpose(-1, -2)
        u = torch.cat([momenta, features[..., N_KINEMATIC:]], dim=-1)
        return torch.where(mask.unsqueeze(-1), u, 0.0)

    def input_generators(self, generators: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Ĝ ``[B, A, n_inputs, n_inputs]``: the first-order action on u of 4-vector generators
        ``[B, A, 4, 4]`` that keep every jet frame fixed (M G M⁻¹ on the momentum columns, 0 on the scalars).
        For generators that turn the jet axis (e.g. J_x on ``p4_jet``) the frame moves too and the action on
        u is not this matrix; callers check that Ĝ is the same for every jet before relying on it."""
        if not self.reads_p4:
            raise ValueError("input_generators needs 4-vector inputs (model.inputs=p4 or p4_jet)")
        gens = generators.to(torch.float64)
        if self.inputs == "p4_jet":
            frame = jet_frame(p4.to(torch.float64), mask).unsqueeze(1)
            gens = frame @ gens @ frame.transpose(-1, -2)
        out = gens.new_zeros(*gens.shape[:-2], self.n_inputs, self.n_inputs)
        out[..., :4, :4] = gens
        return out
