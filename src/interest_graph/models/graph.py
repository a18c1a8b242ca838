"""The user–item graph as tensors: edge index, normalised adjacency, propagation.

Nodes are users ``0..n_users-1`` followed by items ``n_users..n_users+n_items-1``.
The normalised adjacency Â = D^-1/2 A D^-1/2 (A = [[0, W], [Wᵀ, 0]]) is what
LightGCN's :class:`~torch_geometric.nn.conv.LGConv` computes from ``edge_index``
on every call; here it is built once, and since Â is symmetric the backward pass
of ``Â @ x`` is ``Â @ grad`` again, so no transpose is ever formed.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch


def bipartite_adjacency(weights: sp.csr_matrix) -> sp.csr_matrix:
    """A = [[0, W], [Wᵀ, 0]] for a users × items weight matrix W."""
    return sp.bmat([[None, weights], [weights.T, None]], format="csr")


def inverse_sqrt(degrees: np.ndarray) -> np.ndarray:
    """``d^-1/2`` (float64) with 0 where the degree is 0: cold rows stay silent."""
    out = np.zeros(degrees.shape, dtype=np.float64)
    positive = degrees > 0
    out[positive] = np.asarray(degrees[positive], dtype=np.float64) ** -0.5
    return out


def normalised_adjacency(weights: sp.csr_matrix) -> sp.csr_matrix:
    """Â = D^-1/2 A D^-1/2 with D the weighted degrees; isolated nodes stay zero."""
    adjacency = bipartite_adjacency(weights.astype(np.float64))
    scale = sp.diags(inverse_sqrt(np.asarray(adjacency.sum(axis=1)).ravel()))
    return (scale @ adjacency @ scale).tocsr().astype(np.float32)


def torch_csr(
    matrix: sp.csr_matrix, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor (float32, int64 indices)."""
    matrix = matrix.tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "beta state" notes
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            device=device,
        )


def edge_index(weights: sp.csr_matrix) -> torch.Tensor:
    """The undirected ``edge_index`` (2 × 2·nnz) PyG models take."""
    coo = weights.tocoo()
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64)) + weights.shape[0]
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


class Adjacency:
    """The normalised adjacency as a fast ``@`` for torch tensors.

    On CPU, scipy's CSR kernel over row blocks (one per thread; scipy releases the
    GIL) is about twice as fast as torch's sparse CSR here; on CUDA it is a torch
    sparse CSR tensor on the device.
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.shape = matrix.shape
        self.matrix = matrix.astype(np.float32)
        if self.device.type == "cpu":
            threads = max(1, torch.get_num_threads())
            bounds = np.searchsorted(
                self.matrix.indptr, np.linspace(0, self.matrix.nnz, threads + 1)
            )
            bounds[0], bounds[-1] = 0, self.shape[0]
            self.blocks = [
                self.matrix[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        else:
            self.tensor = torch_csr(self.matrix, self.device)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cpu":
            return self.tensor @ x
        dense = x.detach().numpy()
        if self.pool is None:
            return torch.from_numpy(self.blocks[0] @ dense)
        parts = list(self.pool.map(lambda block: block @ dense, self.blocks))
        return torch.from_numpy(np.concatenate(parts))


class _SymmetricSpmm(torch.autograd.Function):
    """``Â @ x`` whose backward reuses Â (valid because Â is symmetric)."""

    @staticmethod
    def forward(ctx: Any, adjacency: Adjacency, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad.contiguous()


def propagate(
    adjacency: Adjacency, x: torch.Tensor, layer_weights: torch.Tensor
) -> torch.Tensor:
    """LightGCN propagation: Σ_l α_l Â^l x, with ``layer_weights`` = α_0..α_L."""
    alphas = [float(alpha) for alpha in layer_weights]
    out = x * alphas[0]
    for alpha in alphas[1:]:
        x = _SymmetricSpmm.apply(adjacency, x)
        out = torch.add(out, x, alpha=alpha)  # one fused pass, forward and back
    return out
