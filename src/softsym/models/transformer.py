"""A particle transformer in the style of ParT (Qu, Li, Qian 2022).

Particle embedding, self-attention blocks over the real particles with pairwise features of each particle pair
(ln ΔR, ln kT, ln z, ln m², computed from ``p4``) embedded to one additive attention bias per head, then
class-attention blocks in which a learned class token reads the particles, and a linear head on that token.

Attention is written out (softmax(QKᵀ/√d + bias) V with plain matmuls) because torch's fused attention kernels
(``scaled_dot_product_attention``, which ``nn.MultiheadAttention(need_weights=False)`` and
``nn.TransformerEncoderLayer`` call) have no forward-mode AD on CPU, and the infinitesimal symmetry penalty
pushes tangents through the model with ``torch.func.jvp``. LayerNorm only (no BatchNorm, as in ParT's input
and pair embeddings): a BatchNorm running-statistics update cannot run inside ``jvp``, and LayerNorm keeps a
jet's logits independent of its batchmates.
"""

from __future__ import annotations

import torch
from torch import nn

from softsym.models.base import MODELS, JetModel
from softsym.models.graph import real_pairs, to_padded
from softsym.models.inputs import DEFAULT_P4_SCALE, ParticleInputs
from softsym.models.lorentz_invariant import minkowski_products
from softsym.models.pfn import mlp_layers
from softsym.physics.features import pt_eta_phi, wrap_phi

PAIR_FEATURES = ("ln_delta_r", "ln_kt", "ln_z", "ln_m2")
# Floor of the quantities whose log is taken (ParT's choice); also keeps logs finite for coincident particles.
_LOG_FLOOR = 1e-8
# Stand-in 4-vector for padded slots: keeps atan2/asinh/log away from 0, so no inf/NaN in any derivative.
_PAD_P4 = (1.0, 1.0, 0.0, 0.0)


def pair_features(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``PAIR_FEATURES`` of the real pairs of distinct particles, ``[N_pairs, 4]`` in the order of
    ``real_pairs(mask).nonzero()``.

    Computed in float64: m² = m_a² + m_b² + 2 p_a·p_b of two nearly collinear, nearly massless particles is a
    small difference of products of ~100 GeV energies, which float32 loses. Angles use pseudorapidity (equal to
    the rapidity of ParT's definition for massless particles, and without the E − p_z cancellation).
    """
    safe = torch.where(mask.unsqueeze(-1), p4, p4.new_tensor(_PAD_P4)).double()
    pt, eta, phi = pt_eta_phi(safe)
    delta_r2 = (eta.unsqueeze(-1) - eta.unsqueeze(-2)).pow(2) + wrap_phi(phi.unsqueeze(-1) - phi.unsqueeze(-2)).pow(2)
    ln_delta_r = 0.5 * torch.log(delta_r2.clamp_min(_LOG_FLOOR))
    pt_a, pt_b = pt.unsqueeze(-1), pt.unsqueeze(-2)
    ln_pt_min = torch.log(torch.minimum(pt_a, pt_b))
    products = minkowski_products(p4, mask)
    mass2 = products.diagonal(dim1=-2, dim2=-1)
    features = torch.stack([
        ln_delta_r,
        ln_pt_min + ln_delta_r,
        ln_pt_min - torch.log(pt_a + pt_b),
        torch.log((mass2.unsqueeze(-1) + mass2.unsqueeze(-2) + 2 * products).clamp_min(_LOG_FLOOR)),
    ], dim=-1)
    return features[real_pairs(mask)].to(p4.dtype)


class MaskedAttention(nn.Module):
    """Multi-head attention of ``query`` tokens over ``context`` tokens, padded context tokens excluded."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``query [B, Q, D]`` attends to ``context [B, K, D]`` (``context_mask [B, K]``), with an additive
        ``bias [B, H, Q, K]``; returns ``[B, Q, D]``."""
        batch, n_query, dim = query.shape
        head_dim = dim // self.n_heads
        q = self.query(query).view(batch, n_query, self.n_heads, head_dim).transpose(1, 2)
        k, v = self.key_value(context).view(batch, -1, 2, self.n_heads, head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) * head_dim**-0.5
        if bias is not None:
            scores = scores + bias
        # The most negative finite score rather than −inf: exp underflows to exactly 0 all the same whenever a
        # row has a real key, and the rows of an empty jet stay finite instead of NaN (whose gradient would
        # leak NaN into real tokens through 0·NaN).
        scores = scores.masked_fill(~context_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        attended = scores.softmax(-1) @ v
        return self.out(attended.transpose(1, 2).reshape(batch, n_query, dim))


class AttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attention(LN x, LN context), then x + FFN(LN x)."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = MaskedAttention(dim, n_heads)
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), self.attention_norm(context), context_mask, bias)
        return x + self.ffn(x)


@MODELS.register("transformer")
class ParticleTransformer(JetModel):
    """ParT-style classifier.

    ``embed_sizes``: hidden widths of the per-particle embedding MLP into ``embed_dim``; ``n_blocks``
    particle self-attention blocks with ``n_heads`` heads and FFN width ``ffn_dim``; ``pair_embed_sizes``:
    hidden widths of the MLP from the 4 pairwise features to one bias per head (``use_pair_features=False``
    drops the biases); ``n_class_blocks`` class-attention blocks; ``dropout`` in the FFNs; ``inputs``/``p4_scale``:
    what the particle embedding reads (``softsym.models.inputs``). The pair features are non-linear functions of
    the 4-vectors whatever ``inputs`` is, so with them no parameter direction reproduces a symmetry exactly.
    """

    def __init__(self, n_features: int, n_classes: int, *, embed_dim: int = 128, n_heads: int = 8,
                 n_blocks: int = 8, n_class_blocks: int = 2, ffn_dim: int = 512,
                 embed_sizes: list[int] = (128, 512), pair_embed_sizes: list[int] = (64, 64, 64),
                 use_pair_features: bool = True, dropout: float = 0.1, inputs: str = "features",
                 p4_scale: float = DEFAULT_P4_SCALE) -> None:
        super().__init__(n_features, n_classes)
        self.input_map = ParticleInputs(inputs, n_features, p4_scale)
        self.reads_p4_elsewhere = use_pair_features
        self.embed = mlp_layers([self.input_map.n_inputs, *embed_sizes, embed_dim], final_activation=False)
        self.pair_embed = (mlp_layers([len(PAIR_FEATURES), *pair_embed_sizes, n_heads], final_activation=False)
                           if use_pair_features else None)
        self.blocks = nn.ModuleList(AttentionBlock(embed_dim, n_heads, ffn_dim, dropout) for _ in range(n_blocks))
        self.class_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        self.class_blocks = nn.ModuleList(AttentionBlock(embed_dim, n_heads, ffn_dim, dropout)
                                          for _ in range(n_class_blocks))
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, self.n_outputs))

    def input_layers(self) -> dict[str, int]:
        return {"embed.0": 1}

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(torch.where(mask.unsqueeze(-1), self.input_map(features, p4, mask), 0.0))
        bias = None
        if self.pair_embed is not None:  # real pairs only: few of all P² when padding is generous
            pair_bias = self.pair_embed(pair_features(p4, mask))
            bias = to_padded(pair_bias, real_pairs(mask)).permute(0, 3, 1, 2)  # [B, H, P, P], 0 off real pairs
        for block in self.blocks:
            x = block(x, x, mask, bias)
        cls = self.class_token.expand(x.shape[0], -1, -1)
        context_mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        for block in self.class_blocks:
            cls = block(cls, torch.cat([cls, x], dim=1), context_mask)
        return self.head(cls.squeeze(1))
