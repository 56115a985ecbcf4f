"""ParticleNet (Qu & Gouskos 2020): EdgeConv blocks on a dynamic kNN graph, global average pooling, FC head.

The first block's graph joins particles close in (Δη, Δφ) (the first two feature columns); every later block
recomputes the k nearest neighbours in the feature space of the block before it. Message passing is
``torch_geometric.nn.EdgeConv`` on the real particles only, so padding never enters a graph or a pool.

One deliberate change from the paper: LayerNorm where the paper has BatchNorm. BatchNorm's running-statistics
update is an in-place write that ``torch.func.jvp`` (the infinitesimal penalty) refuses in training mode, and
with LayerNorm a jet's logits never depend on the other jets in its batch, which the penalties, the Hessian
analysis and the robustness scans take for granted.

Relative features only (no ``model.inputs`` option): the features reach the network through three branches,
the first EdgeConv's edge network on (x_i, x_j − x_i), the first block's shortcut and the (Δη, Δφ) kNN
coordinates, and the graph is discrete, so no parameter direction reproduces a symmetry's action. Its
pseudo-Goldstone analysis is approximate: the least-squares directions of the first linear layer, with the
mismatch measured and reported (``goldstone_direction_error``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import EdgeConv, global_mean_pool

from softsym.models.base import MODELS, JetModel
from softsym.models.graph import knn_graph, node_jet_index, to_padded

# Feature columns that place particles for the first kNN graph: Δη and Δφ to the jet axis.
COORDINATE_COLUMNS = slice(0, 2)


def normed_layers(sizes: list[int]) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU for each consecutive pair of widths (ParticleNet's per-edge network)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU()]
    return nn.Sequential(*layers)


class EdgeConvBlock(nn.Module):
    """EdgeConv with edge features (x_i, x_j − x_i), mean over neighbours, plus a linear shortcut."""

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        self.conv = EdgeConv(normed_layers([2 * in_channels, *channels]), aggr="mean")
        self.shortcut = nn.Sequential(nn.Linear(in_channels, channels[-1]), nn.LayerNorm(channels[-1]))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x, edge_index) + self.shortcut(x))


@MODELS.register("particlenet")
class ParticleNet(JetModel):
    """ParticleNet on the real particles of each jet.

    ``block_channels``: the widths of the three linear layers of each EdgeConv block; ``k``: neighbours per
    particle (fewer in jets with at most k real particles); ``head_sizes``/``dropout``: the FC head after
    global average pooling.
    """

    def __init__(self, n_features: int, n_classes: int, *, k: int = 16,
                 block_channels: list[list[int]] = ((64, 64, 64), (128, 128, 128), (256, 256, 256)),
                 head_sizes: list[int] = (256,), dropout: float = 0.1) -> None:
        super().__init__(n_features, n_classes)
        if k < 1:
            raise ValueError(f"ParticleNet needs k >= 1 neighbours, got {k}")
        self.k = k
        in_widths = [n_features, *(channels[-1] for channels in block_channels[:-1])]
        self.blocks = nn.ModuleList(EdgeConvBlock(width, list(channels))
                                    for width, channels in zip(in_widths, block_channels, strict=True))
        head_widths = [block_channels[-1][-1], *head_sizes]
        head: list[nn.Module] = []
        for a, b in zip(head_widths[:-1], head_widths[1:], strict=True):
            head += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.head = nn.Sequential(*head, nn.Linear(head_widths[-1], self.n_outputs))

    def forward(self, features: torch.Tensor, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = features[mask]
        coords = features[..., COORDINATE_COLUMNS]
        for i, block in enumerate(self.blocks):
            if i > 0:  # dynamic graph: neighbours in the previous block's feature space
                coords = to_padded(x.detach(), mask)
            x = block(x, knn_graph(coords, mask, self.k))
        return self.head(global_mean_pool(x, node_jet_index(mask), size=mask.shape[0]))
