"""A hard-symmetry reference: a network whose output is exactly Lorentz invariant by construction.

Its only kinematic inputs are Minkowski products: p_i·p_j of every pair of constituents, p_i·J with the jet
4-momentum J = Σ p_j, and J² (the jet mass squared), plus the symmetry-neutral per-particle scalars (charge,
PID flags; the feature columns after the kinematic ones). The kinematic features (Δη, log pT, ...) are never
read: they are not Lorentz invariant.

The network is a continuous-filter convolution (SchNet, Schütt et al. 2017) on the complete graph of each jet,
with the Minkowski product in place of the distance, in the spirit of LorentzNet (Gong et al. 2022) with
scalar updates only. Every particle starts from its invariants; each layer adds to h_i a function of h_i and
of the mean over the other real particles j of W(p_i·p_j) h_j, where the filter W(x) = Σ_k b_k(x) W_k expands
the product in learned Gaussians b_k. The filters are [B, K, P, P] with a handful of K, and the sum over j is
a batched matmul, so no [B, P, P, hidden] tensor is ever built (that made a per-pair MLP memory-bound on CPU).
Means, sums and the complete graph keep the output permutation invariant; padded particles take part in no
product, message or sum.

The products are formed in float64 from the float32 4-vectors: E_iE_j − p⃗_i·p⃗_j of two nearly collinear
~100 GeV constituents cancels down to a few GeV², which float32 arithmetic resolves to a few digits only,
while in float64 every term is exact and the sum loses nothing that matters. (Exact invariance under the
symmetry penalty's derivatives holds in float32 too; float64 buys accurate inputs.) The products enter the
network as asinh(x / GeV²): linear near 0, logarithmic over the 1e-2 … 1e5 GeV² they span, and odd, so
slightly negative values from massless rounding stay harmless.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from softsym.models.base import MODELS, JetModel, masked_sum
from softsym.models.graph import real_pairs
from softsym.models.pfn import mlp_layers
from softsym.physics.features import N_KINEMATIC
from softsym.physics.lorentz import METRIC

# Initial centres of the Gaussians on asinh(p_i·p_j / GeV²): 0 … 12 covers products up to ~1e5 GeV²
# (TeV jets); centres and widths are learned from there.
_FILTER_RANGE = (0.0, 12.0)


def minkowski_products(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """p_i·p_j of all constituent pairs ``[B, P, P]`` in float64, zero where either is padding."""
    real = torch.where(mask.unsqueeze(-1), p4, 0.0).double()
    return real @ METRIC.to(real) @ real.transpose(-1, -2)


class InvariantConvolution(nn.Module):
    """h_i <- h_i + ψ(h_i, Σ_k Σ_j basis_kij W_k h_j): one continuous-filter convolution with a residual."""

    def __init__(self, hidden_dim: int, n_filters: int) -> None:
        super().__init__()
        self.filter_weights = nn.Linear(hidden_dim, n_filters * hidden_dim, bias=False)  # W_k, stacked
        self.update = mlp_layers([2 * hidden_dim, hidden_dim, hidden_dim], final_activation=False)

    def forward(self, h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """``h [B, P, H]``; ``basis [B, K, P, P]``: b_k(p_i·p_j) times the mean's weight (0 for non-pairs)."""
        batch, n_slots, hidden = h.shape
        per_filter = self.filter_weights(h).view(batch, n_slots, -1, hidden).transpose(1, 2)  # [B, K, P, H]
        messages = (basis @ per_filter).sum(1)
        return h + self.update(torch.cat([h, messages], dim=-1))


@MODELS.register("lorentz_invariant")
class LorentzInvariantNet(JetModel):
    """Continuous-filter convolutions on Minkowski products.

    ``hidden_dim``: width of the per-particle state; ``n_layers``: convolution rounds; ``n_filters``: Gaussians
    in the filter expansion; ``head_sizes``: hidden widths of the head on (Σ_i h_i, asinh J²). Needs
    ``n_features >= N_KINEMATIC``: the columns after the kinematic ones are read as invariant scalars.
    """

    def __init__(self, n_features: int, n_classes: int, *, hidden_dim: int = 72, n_layers: int = 6,
                 n_filters: int = 16, head_sizes: list[int] = (72,)) -> None:
        super().__init__(n_features, n_classes)
        if n_features < N_KINEMATIC:
            raise ValueError(f"lorentz_invariant expects the {N_KINEMATIC} kinematic feature columns first, "
                             f"then scalars; got n_features={n_features}")
        n_scalars = n_features - N_KINEMATIC
        self.embed = mlp_layers([1 + n_scalars, hidden_dim, hidden_dim], final_activation=True)
        low, high = _FILTER_RANGE
        self.filter_centres = nn.Parameter(torch.linspace(low, high, n_filters))
        self.filter_log_widths = nn.Parameter(torch.full((n_filters,), math.log((high - low) / n_filters)))
        self.layers = nn.ModuleList(InvariantConvolution(hidden_dim, n_filters) for _ in range(n_layers))
        self.head = mlp_layers([hidden_dim + 1, *head_sizes, self.n_outputs], final_activation=False)

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        products = minkowski_products(p4, mask)  # zero for padding, so the sums below see real particles only
        with_jet = products.sum(-1)              # p_i·J
        jet_mass2 = with_jet.sum(-1, keepdim=True)  # J·J
        scalars = torch.where(mask.unsqueeze(-1), features[..., N_KINEMATIC:], 0.0)
        h = self.embed(torch.cat([torch.asinh(with_jet).to(p4.dtype).unsqueeze(-1), scalars], dim=-1))

        is_pair = real_pairs(mask)
        mean_weight = is_pair.to(h.dtype) / is_pair.sum(-1, keepdim=True).clamp_min(1)
        scaled = torch.asinh(products).to(p4.dtype).unsqueeze(1)  # [B, 1, P, P]
        centres = self.filter_centres.view(-1, 1, 1)
        basis = torch.exp(-0.5 * ((scaled - centres) / self.filter_log_widths.exp().view(-1, 1, 1)).pow(2))
        basis = basis * mean_weight.unsqueeze(1)
        for layer in self.layers:
            h = layer(h, basis)
        return self.head(torch.cat([masked_sum(h, mask), torch.asinh(jet_mass2).to(p4.dtype)], dim=-1))
