"""A heterogeneous GraphSAGE over users and items with node features as inputs.

Layer 0 gives every node a vector from its ID and its features:

    x_u = id_u + F_u · features_u
    x_i = id_i + F_i · features_i + P · text_i        (P only with item text)

(features standardised and scaled by ``feature_scale``; ID vectors of nodes
without training edges are masked to zero, as they are never trained). A
GraphSAGE encoder, made heterogeneous by :func:`torch_geometric.nn.to_hetero` over
the node types ``user`` and ``item`` and the edge types
``(user, interacts, item)`` and ``(item, rev_interacts, user)``, then computes

    h = SAGE_L(… relu(SAGE_1(x)) …)        out = x + h

where each ``SAGEConv`` keeps its own weights per edge type. The skip connection
from layer 0 keeps the ID vectors' direct say in the scores.

The model has the interface of :class:`interest_graph.models.gnn.InterestGCN`
(``layer0``, ``propagate``, ``forward``, ``split``, ``isolated``), so the training
loop of :mod:`interest_graph.models.training` trains it unchanged; it carries its
own edges, and the ``adjacency`` that loop passes is ignored.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import SAGEConv, to_hetero
from torch_geometric.transforms import ToUndirected
from torch_geometric.typing import EdgeType

from interest_graph.config import TrainConfig
from interest_graph.evaluation.protocols import EvaluationSplit

USER = "user"
ITEM = "item"
INTERACTS: EdgeType = (USER, "interacts", ITEM)
REV_INTERACTS: EdgeType = (ITEM, "rev_interacts", USER)

#: How strongly the standardised node features enter layer 0 (see HeteroSAGE).
FEATURE_SCALE = 0.1


class _SAGEEncoder(nn.Module):
    """Homogeneous GraphSAGE layers (ReLU between them), for ``to_hetero``."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(SAGEConv((-1, -1), dim) for _ in range(layers))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        last = len(self.convs) - 1
        for position, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if position < last:
                x = x.relu()
        return x


def standardise(features: torch.Tensor) -> torch.Tensor:
    """Columns to zero mean and unit variance; constant columns become 0."""
    features = features.float()
    if features.shape[0] == 0 or features.shape[1] == 0:
        return features
    mean = features.mean(0, keepdim=True)
    std = features.std(0, unbiased=False, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (features - mean) / std


def hetero_graph(
    pairs: torch.Tensor, n_users: int, n_items: int
) -> tuple[HeteroData, list[str], list[EdgeType]]:
    """The bipartite graph as ``HeteroData`` with both edge directions.

    Args:
        pairs: 2 × E (user row, item column) training interactions.
        n_users: user nodes.
        n_items: item nodes.

    Returns:
        The graph and its metadata (node types, edge types).
    """
    data = HeteroData()
    data[USER].num_nodes = n_users
    data[ITEM].num_nodes = n_items
    data[INTERACTS].edge_index = pairs.long()
    data = ToUndirected()(data)
    node_types, edge_types = data.metadata()
    return data, list(node_types), list(edge_types)


def _projection(columns: int, dim: int) -> nn.Linear | None:
    """A bias-free linear map (inputs are centred), or None without inputs."""
    if columns == 0:
        return None
    layer = nn.Linear(columns, dim, bias=False)
    nn.init.xavier_uniform_(layer.weight)
    return layer


class HeteroSAGE(nn.Module):
    """GraphSAGE over a user–item ``HeteroData`` with ID + feature inputs.

    Args:
        n_users: users (output rows ``0..n_users-1``).
        n_items: items (output rows ``n_users..``).
        dim: vector size of every layer.
        layers: GraphSAGE layers (0: layer-0 vectors only).
        pairs: 2 × E (user row, item column) training edges.
        user_features: n_users × U numeric features (standardised here), or None.
        item_features: n_items × I numeric features (standardised here), or None.
        item_text: n_items × T text embeddings (used as given), or None.
        feature_scale: the standardised features are multiplied by this. One
            projection weight moves every node's vector, and Adam moves it as far
            per step as an ID entry, so at full scale the (mostly popularity-like)
            features swamp the ID vectors early on; 0.1 lets the IDs lead.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        layers: int,
        pairs: torch.Tensor,
        user_features: torch.Tensor | None = None,
        item_features: torch.Tensor | None = None,
        item_text: torch.Tensor | None = None,
        feature_scale: float = FEATURE_SCALE,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        user_features = _checked(user_features, n_users, "user_features")
        item_features = _checked(item_features, n_items, "item_features")
        item_text = _checked(item_text, n_items, "item_text")

        self.user_id = nn.Embedding(n_users, dim)
        self.item_id = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user_id.weight)
        nn.init.xavier_uniform_(self.item_id.weight)

        # Inputs, not learned: rebuilt from the data, so kept out of checkpoints.
        self.user_features: torch.Tensor
        self.item_features: torch.Tensor
        self.item_text: torch.Tensor
        self.register_buffer(
            "user_features",
            standardise(user_features) * feature_scale,
            persistent=False,
        )
        self.register_buffer(
            "item_features",
            standardise(item_features) * feature_scale,
            persistent=False,
        )
        self.register_buffer("item_text", item_text.float(), persistent=False)
        self.user_projection = _projection(user_features.shape[1], dim)
        self.item_projection = _projection(item_features.shape[1], dim)
        self.text_projection = _projection(item_text.shape[1], dim)

        data, node_types, edge_types = hetero_graph(pairs, n_users, n_items)
        self.edge_types = edge_types
        for position, edge_type in enumerate(edge_types):
            self.register_buffer(
                f"edges_{position}", data[edge_type].edge_index, persistent=False
            )
        degree = torch.cat(
            [
                torch.bincount(pairs[0].long(), minlength=n_users),
                torch.bincount(pairs[1].long(), minlength=n_items),
            ]
        )
        self.isolated: torch.Tensor
        self.register_buffer("isolated", (degree == 0).float().unsqueeze(1))
        self.has_isolated = bool((degree == 0).any())

        self.encoder: nn.Module | None = None
        if layers > 0:
            self.encoder = to_hetero(
                _SAGEEncoder(dim, layers), (node_types, edge_types), aggr="sum"
            )
            # SAGEConv((-1, -1)) is lazy: one pass sizes its weights, so that the
            # optimiser (built right after the model) sees real parameters.
            with torch.no_grad():
                self.propagate(None, self.layer0())

    @property
    def edge_index_dict(self) -> dict[EdgeType, torch.Tensor]:
        """The training edges per edge type (both directions)."""
        return {
            edge_type: getattr(self, f"edges_{position}")
            for position, edge_type in enumerate(self.edge_types)
        }

    @property
    def layer_weights(self) -> torch.Tensor:
        """Uniform weights, one per layer (the interface; not used here)."""
        return torch.ones(self.layers + 1, device=self.isolated.device)

    def layer0(self, id_dropout: float = 0.0) -> torch.Tensor:
        """Layer-0 vectors, users then items: masked ID vectors plus features.

        Args:
            id_dropout: during training, the share of item ID vectors dropped so
                that the item's features and text alone must place it (cold
                start); only used when items have features or text.
        """
        ids = torch.cat([self.user_id.weight, self.item_id.weight])
        if self.has_isolated:
            ids = ids * (1.0 - self.isolated)
        users, items = ids[: self.n_users], ids[self.n_users :]
        item_inputs = self.item_projection is not None or (
            self.text_projection is not None
        )
        if self.training and id_dropout > 0 and item_inputs:
            keep = torch.rand(self.n_items, 1, device=ids.device) >= id_dropout
            items = items * keep.float()
        if self.user_projection is not None:
            users = users + self.user_projection(self.user_features)
        if self.item_projection is not None:
            items = items + self.item_projection(self.item_features)
        if self.text_projection is not None:
            items = items + self.text_projection(self.item_text)
        return torch.cat([users, items])

    def propagate(self, adjacency: object, x0: torch.Tensor) -> torch.Tensor:
        """Final vectors ``x0 + SAGE(x0)`` (users then items); ``adjacency`` unused."""
        if self.encoder is None:
            return x0
        x_dict = {USER: x0[: self.n_users], ITEM: x0[self.n_users :]}
        out = self.encoder(x_dict, self.edge_index_dict)
        return x0 + torch.cat([out[USER], out[ITEM]])

    def forward(
        self, adjacency: object = None, id_dropout: float = 0.0
    ) -> torch.Tensor:
        """Final vectors of every node (users then items)."""
        return self.propagate(adjacency, self.layer0(id_dropout))

    def split(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors, item vectors) of a node matrix."""
        return nodes[: self.n_users], nodes[self.n_users :]


def _checked(values: torch.Tensor | None, rows: int, name: str) -> torch.Tensor:
    """``values`` as float32 (an empty n × 0 matrix for None); rows checked."""
    if values is None:
        return torch.zeros(rows, 0)
    if values.dim() != 2 or values.shape[0] != rows:
        raise ValueError(f"{name} must be {rows} × columns, got {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} has non-finite values")
    return values.float()


def _tensor(values: np.ndarray | None) -> torch.Tensor | None:
    if values is None:
        return None
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def build_hetero_sage(
    split: EvaluationSplit,
    config: TrainConfig,
    user_features: np.ndarray | None,
    item_features: np.ndarray | None,
    item_text: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    *,
    graph: sp.spmatrix | None = None,
    feature_scale: float = FEATURE_SCALE,
) -> HeteroSAGE:
    """A :class:`HeteroSAGE` on the training graph of ``split``, on ``device``.

    Args:
        split: its ``train`` matrix gives the edges (unless ``graph`` is given) and
            the user and item counts.
        config: its ``dim`` and ``layers`` are used; ``model`` is not checked.
        user_features: n_users × U rows aligned with ``split.user_ids`` (e.g.
            :func:`interest_graph.models.node_features.node_features_from_feast`),
            or None.
        item_features: n_items × I rows aligned with ``split.item_ids``, or None.
        item_text: n_items × T item text embeddings, or None.
        device: where the model lives.
        graph: edges from this users × items matrix's nonzeros instead (e.g. the
            weighted graph the training loop gets; weights are not used).
        feature_scale: see :class:`HeteroSAGE`.
    """
    edges = (split.train if graph is None else graph).tocoo()
    keep = edges.data != 0
    pairs = torch.from_numpy(
        np.stack([edges.row[keep], edges.col[keep]]).astype(np.int64)
    )
    model = HeteroSAGE(
        split.n_users,
        split.n_items,
        config.dim,
        config.layers,
        pairs,
        _tensor(user_features),
        _tensor(item_features),
        _tensor(item_text),
        feature_scale=feature_scale,
    )
    return model.to(torch.device(device))
