"""LightGCN and the text-aware graph model (torch-geometric).

Both keep their ID vectors in :class:`torch_geometric.nn.LightGCN` (its embedding
table, its layer weights α and its :class:`~torch_geometric.nn.conv.LGConv`
layers). Training propagates with a precomputed normalised adjacency
(:func:`interest_graph.models.graph.propagate`), the same arithmetic as PyG's
``get_embedding(edge_index)`` (a test checks they agree) at a fraction of the cost.

The text-aware model gives every item a layer-0 vector

    x_i = id_i + P · text_i        (P: a learned projection of the text embedding)

so an item nobody has interacted with still has a meaningful vector: its ID part
is masked to zero (it was never trained) and its text part places it among the
items whose text it shares. Users get their vectors from the graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import LightGCN

from interest_graph.models.graph import Adjacency, propagate


class InterestGCN(nn.Module):
    """LightGCN over users and items, optionally with text-aware item vectors.

    Args:
        n_users: users (graph nodes ``0..n_users-1``).
        n_items: items (nodes ``n_users..``).
        dim: vector size.
        layers: propagation layers.
        degree: each node's degree in the training graph (isolated nodes, such as
            cold items, keep their layer-0 vector at full weight).
        item_text: n_items × text_dim text embeddings, or None for plain LightGCN.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        layers: int,
        degree: torch.Tensor,
        item_text: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.lightgcn = LightGCN(n_users + n_items, dim, layers)
        self.isolated: torch.Tensor
        self.register_buffer("isolated", (degree == 0).float().unsqueeze(1))
        self.has_isolated = bool((degree == 0).any())
        self.text_projection: nn.Linear | None = None
        if item_text is not None:
            self.item_text: torch.Tensor
            self.register_buffer("item_text", item_text.float())
            self.text_projection = nn.Linear(item_text.shape[1], dim, bias=False)
            nn.init.xavier_uniform_(self.text_projection.weight)

    @property
    def layer_weights(self) -> torch.Tensor:
        alpha: torch.Tensor = self.lightgcn.alpha
        return alpha

    def layer0(self, id_dropout: float = 0.0) -> torch.Tensor:
        """Layer-0 vectors: ID vectors (zero for isolated nodes) plus item text.

        Args:
            id_dropout: during training, the share of item ID vectors dropped so
                that the text projection alone must place items (cold start).
        """
        ids = self.lightgcn.embedding.weight
        if self.has_isolated:
            ids = ids * (1.0 - self.isolated)
        if self.text_projection is None:
            return ids
        keep = torch.ones(ids.shape[0], 1, device=ids.device)
        if self.training and id_dropout > 0:
            drop = torch.rand(self.n_items, 1, device=ids.device) < id_dropout
            keep[self.n_users :] = (~drop).float()
        text = self.text_projection(self.item_text)
        users = ids[: self.n_users]
        items = ids[self.n_users :] * keep[self.n_users :] + text
        return torch.cat([users, items])

    def forward(self, adjacency: Adjacency, id_dropout: float = 0.0) -> torch.Tensor:
        """Final vectors of every node (users then items)."""
        return self.propagate(adjacency, self.layer0(id_dropout))

    def propagate(self, adjacency: Adjacency, x0: torch.Tensor) -> torch.Tensor:
        """Final vectors from given layer-0 vectors (training regularises x0)."""
        out = propagate(adjacency, x0, self.layer_weights)
        if not self.has_isolated:
            return out
        # An isolated node's neighbours contribute nothing: keep its own vector at
        # the full weight Σα so it ranks on the same scale as connected nodes.
        rest = self.layer_weights.sum() - self.layer_weights[0]
        return out + x0 * self.isolated * rest

    def reference_embedding(self, edge_index: torch.Tensor) -> torch.Tensor:
        """PyG's own propagation from ``edge_index`` (plain LightGCN; for checks)."""
        return self.lightgcn.get_embedding(edge_index)

    def split(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors, item vectors) of a node matrix."""
        return nodes[: self.n_users], nodes[self.n_users :]
