"""Graphs on padded particle clouds: k-nearest-neighbour edges in plain torch as PyG ``edge_index``, and the
bookkeeping between the padded layout and lists of real particles or real particle pairs.

``torch_geometric.nn.knn_graph`` needs ``torch-cluster`` or ``pyg-lib``, which have no wheels here, so the
neighbours come from a batched ``topk`` on the pairwise distances of each jet ``[B, P, P]``. Nodes are the
real particles only, numbered in the row-major order of ``mask`` (the order of ``x[mask]``), so the same
numbering serves the node features, the edges and the jet index of each node.
"""

from __future__ import annotations

import torch


def node_jet_index(mask: torch.Tensor) -> torch.Tensor:
    """Jet index of each real particle ``[N]``, in the node order of ``x[mask]`` (PyG's ``batch`` vector)."""
    return mask.nonzero()[:, 0]


def real_pairs(mask: torch.Tensor) -> torch.Tensor:
    """``[B, P, P]`` bool: both particles real and distinct."""
    n_slots = mask.shape[-1]
    distinct = ~torch.eye(n_slots, dtype=torch.bool, device=mask.device)
    return mask.unsqueeze(-1) & mask.unsqueeze(-2) & distinct


def to_padded(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``rows [N, C]``, one per True entry of ``mask`` in the order of ``x[mask]``, back to the padded layout
    ``[*mask.shape, C]`` with zeros elsewhere (nodes with a particle mask, pairs with ``real_pairs``)."""
    return rows.new_zeros(*mask.shape, rows.shape[-1]).masked_scatter(mask.unsqueeze(-1), rows)


def knn_graph(coords: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Edges from each real particle's k nearest real neighbours in ``coords [B, P, D]`` (same jet, not itself).

    Returns ``edge_index [2, E]`` over the real particles in PyG's source-to-target convention: row 0 is the
    neighbour j, row 1 the centre i, so messages flow j -> i. A particle in a jet with fewer than k + 1 real
    particles gets all its real neighbours (none in a one-particle jet). Edges are grouped by centre, nearest
    first. Distances are not differentiated (the graph is discrete), so tangents and gradients never go
    through this function.
    """
    batch, n_slots, _ = coords.shape
    points = torch.where(mask.unsqueeze(-1), coords.detach(), 0.0)
    squared_norm = points.pow(2).sum(-1)
    # |a|² + |b|² - 2 a·b: one matmul instead of a [B, P, P, D] difference tensor (D is up to 256)
    distance = squared_norm.unsqueeze(-1) + squared_norm.unsqueeze(-2) - 2 * points @ points.transpose(1, 2)
    distance = distance.masked_fill(~real_pairs(mask), torch.inf)
    n_neighbours = min(k, n_slots - 1)
    nearest_distance, nearest = distance.topk(n_neighbours, dim=-1, largest=False)  # [B, P, k]
    is_edge = mask.unsqueeze(-1) & torch.isfinite(nearest_distance)

    slot_offset = torch.arange(batch, device=mask.device).view(batch, 1, 1) * n_slots
    node_of_slot = mask.flatten().cumsum(0) - 1  # flat slot -> node number among the real particles
    centre = torch.arange(batch * n_slots, device=mask.device).view(batch, n_slots, 1).expand_as(nearest)
    return torch.stack([node_of_slot[(nearest + slot_offset)[is_edge]], node_of_slot[centre[is_edge]]])
