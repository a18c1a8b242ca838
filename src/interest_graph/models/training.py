"""Training the graph models: BPR or InfoNCE, mini-batches, early stopping, resume.

One epoch visits every training (user, item) pair once, in a seeded random order,
in mini-batches. Each step propagates the whole graph (LightGCN needs every
node's neighbours), then scores the batch's users against their positive items
and sampled negatives:

- ``bpr``: one uniform negative per positive, −log σ(s⁺ − s⁻), L2 on the batch's
  layer-0 vectors (as in the LightGCN paper);
- ``infonce``: cosine scores over the positive and a shared set of uniform
  negatives, divided by a temperature, softmax cross-entropy (sampled softmax).

Negatives come from items with training interactions only: a cold item has no
positives, and pushing its text away from every user would teach nothing.

Early stopping watches NDCG@K on a validation split built from the training data
(:func:`interest_graph.evaluation.validation.validation_split`), never on a test
user's ground truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from interest_graph.config import TrainConfig
from interest_graph.evaluation.protocols import EvaluationSplit
from interest_graph.evaluation.ranking import rank_test_users, score_ranking
from interest_graph.logs import get_logger, progress
from interest_graph.models.gnn import InterestGCN
from interest_graph.models.graph import Adjacency, normalised_adjacency
from interest_graph.models.hetero import HeteroSAGE, build_hetero_sage

log = get_logger("train")

# Both expose layer0 / propagate / split: the loop trains either.
GraphModel = InterestGCN | HeteroSAGE

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


class VectorScorer:
    """A Recommender from user and item vectors: score = user · item."""

    def __init__(self, name: str, users: np.ndarray, items: np.ndarray) -> None:
        self.name = name
        self.users = users
        self.items_t = np.ascontiguousarray(items.T)

    def fit(self, split: EvaluationSplit) -> None:
        """Nothing to learn: the vectors are given."""

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items_t


@dataclass
class TrainingRun:
    """What a training run produced: final vectors and its history."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    epochs: int
    best_epoch: int
    best_validation: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)


def pick_device(requested: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def build_model(
    split: EvaluationSplit,
    config: TrainConfig,
    weights: sp.csr_matrix,
    item_text: np.ndarray | None,
    device: torch.device,
    node_features: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[GraphModel, Adjacency]:
    """The model and the normalised adjacency of the training graph ``weights``."""
    adjacency = normalised_adjacency(weights)
    if config.model == "hetero-sage":
        if node_features is None:
            raise ValueError("hetero-sage needs node features (Feast)")
        user_features, item_features = node_features
        sage = build_hetero_sage(
            split,
            config,
            user_features,
            item_features,
            item_text,
            device,
            graph=weights,
        )
        return sage, Adjacency(adjacency, device)
    degree = torch.from_numpy(np.diff(adjacency.indptr))
    text = None
    if config.model == "text-lightgcn":
        if item_text is None:
            raise ValueError("text-lightgcn needs item text embeddings")
        text = torch.from_numpy(np.asarray(item_text, dtype=np.float32))
    model = InterestGCN(
        split.n_users, split.n_items, config.dim, config.layers, degree, text
    ).to(device)
    return model, Adjacency(adjacency, device)


def _batch_rows(
    model: GraphModel,
    users: torch.Tensor,
    items: torch.Tensor,
    negatives: torch.Tensor,
) -> tuple[torch.Tensor, list[int]]:
    """Node rows of a batch in one index (one scatter in the backward pass)."""
    rows = torch.cat([users, items + model.n_users, negatives + model.n_users])
    return rows, [users.numel(), items.numel(), negatives.numel()]


def _bpr_loss(
    model: GraphModel,
    nodes: torch.Tensor,
    x0: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    negatives: torch.Tensor,
    l2: float,
) -> torch.Tensor:
    rows, sizes = _batch_rows(model, users, items, negatives)
    u, p, n = nodes[rows].split(sizes)
    margin = (u * p).sum(1) - (u * n).sum(1)
    reg = x0[rows].pow(2).sum() / (2 * users.numel())
    return -F.logsigmoid(margin).mean() + l2 * reg


def _infonce_loss(
    model: GraphModel,
    nodes: torch.Tensor,
    x0: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    negatives: torch.Tensor,
    l2: float,
    temperature: float,
) -> torch.Tensor:
    rows, sizes = _batch_rows(model, users, items, negatives)
    u, p, n = F.normalize(nodes[rows], dim=1).split(sizes)
    positive = (u * p).sum(1, keepdim=True) / temperature
    negative = u @ n.T / temperature
    loss = (
        torch.logsumexp(torch.cat([positive, negative], dim=1), dim=1) - positive[:, 0]
    )
    reg = x0[rows[: 2 * users.numel()]].pow(2).sum() / (2 * users.numel())
    return loss.mean() + l2 * reg


def final_vectors(
    model: GraphModel, adjacency: Adjacency, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, item vectors) as float32 numpy; cosine models are normalised."""
    model.eval()
    with torch.no_grad():
        nodes = model(adjacency)
        if config.loss == "infonce":
            nodes = F.normalize(nodes, dim=1)
        users, items = model.split(nodes.float().cpu())
    model.train()
    return users.numpy(), items.numpy()


def _split_metrics(
    model: GraphModel,
    adjacency: Adjacency,
    config: TrainConfig,
    split: EvaluationSplit,
    k: int,
) -> dict[str, float]:
    """The current vectors' metrics on ``split`` (validation, or a monitored one)."""
    users, items = final_vectors(model, adjacency, config)
    top_k, _ = rank_test_users(VectorScorer(config.model, users, items), split, k)
    metrics = score_ranking(split, top_k)
    return {name: float(value) for name, value in metrics.items()}


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer, model: GraphModel
) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                out[f"optimizer/{names[id(param)]}/{key}"] = tensor
    return out


def _load_optimizer_tensors(
    optimizer: torch.optim.Optimizer,
    model: GraphModel,
    tensors: dict[str, torch.Tensor],
) -> None:
    for name, param in model.named_parameters():
        prefix = f"optimizer/{name}/"
        state = {
            key[len(prefix) :]: value.to(param.device)
            for key, value in tensors.items()
            if key.startswith(prefix)
        }
        if state:
            optimizer.state[param] = state


@dataclass
class _Checkpointer:
    """Checkpoints (safetensors + JSON, never pickle) after each epoch."""

    folder: Path | None
    fingerprint: str

    def save(
        self,
        model: GraphModel,
        optimizer: torch.optim.Optimizer,
        best: dict[str, torch.Tensor],
        state: dict[str, Any],
    ) -> None:
        if self.folder is None:
            return
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"best/{k}": v for k, v in best.items()})
        tensors.update(_optimizer_tensors(optimizer, model))
        tensors["rng/torch"] = torch.get_rng_state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(tensors, str(self.folder / CHECKPOINT_WEIGHTS))
        payload = {"fingerprint": self.fingerprint, **state}
        (self.folder / CHECKPOINT_STATE).write_text(json.dumps(payload, indent=2))

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if self.folder is None or not (self.folder / CHECKPOINT_STATE).is_file():
            return None
        from safetensors.torch import load_file

        state = json.loads((self.folder / CHECKPOINT_STATE).read_text())
        if state.get("fingerprint") != self.fingerprint:
            log.warning(
                "checkpoint in %s is for another run; starting anew", self.folder
            )
            return None
        return load_file(str(self.folder / CHECKPOINT_WEIGHTS)), state


def _fingerprint(config: TrainConfig, split: EvaluationSplit, epochs: int) -> str:
    facts = config.model_dump(mode="json", exclude={"checkpoint_dir"})
    facts.update(
        protocol=split.protocol, shape=list(split.train.shape), nnz=split.train.nnz
    )
    facts["epochs"] = epochs
    return json.dumps(facts, sort_keys=True)


def _train_step(
    model: GraphModel,
    adjacency: Adjacency,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    users: torch.Tensor,
    items: torch.Tensor,
    warm_items: torch.Tensor,
    generator: torch.Generator,
) -> float:
    """One mini-batch: propagate, sample negatives, loss, Adam step; the loss."""
    x0 = model.layer0(config.id_dropout)
    nodes = model.propagate(adjacency, x0)
    count = users.numel() if config.loss == "bpr" else config.negatives
    pick = torch.randint(warm_items.numel(), (count,), generator=generator)
    negatives = warm_items[pick].to(users.device)
    if config.loss == "bpr":
        loss = _bpr_loss(model, nodes, x0, users, items, negatives, config.l2)
    else:
        loss = _infonce_loss(
            model, nodes, x0, users, items, negatives, config.l2, config.temperature
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_graph_model(
    split: EvaluationSplit,
    config: TrainConfig,
    **options: Any,
) -> TrainingRun:
    """Train on ``split.train``; see :func:`_train` for the options.

    Deterministic algorithms are on while it runs (same seed, same vectors: the
    backward pass's scatter-adds are then ordered), and restored afterwards.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(split, config, **options)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(
    split: EvaluationSplit,
    config: TrainConfig,
    *,
    weights: sp.csr_matrix | None = None,
    item_text: np.ndarray | None = None,
    validation: EvaluationSplit | None = None,
    epochs: int | None = None,
    k: int = 20,
    device: str = "auto",
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    max_steps: int | None = None,
    node_features: tuple[np.ndarray, np.ndarray] | None = None,
    monitor: EvaluationSplit | None = None,
) -> TrainingRun:
    """Train on ``split.train`` (or the edge ``weights`` given, same sparsity).

    Args:
        split: the training data; only ``split.train`` (and its users' and items'
            count) is read, never ``ground_truth``.
        config: the model and training settings.
        weights: optional edge weights (event type, recency) for the graph.
        item_text: n_items × text_dim embeddings for ``text-lightgcn``.
        validation: a split to early-stop on (NDCG@k), or None to run ``epochs``.
        epochs: epochs to run (default ``config.epochs``).
        k: the cut-off of the validation metrics.
        device: ``auto``, ``cpu`` or ``cuda``.
        checkpoint_dir: resume from and checkpoint to this folder.
        on_epoch: called with each epoch's record (loss, seconds, metrics).
        max_steps: end each epoch after this many batches (timing runs, smoke
            tests); None visits every training pair.
        node_features: (user, item) feature matrices for ``hetero-sage``.
        monitor: a split scored after every epoch only to record the quality
            curve (``monitor_*`` in the history, e.g. time to a test recall);
            it never influences training, stopping or the returned vectors.
    """
    started = time.perf_counter()
    epochs = epochs or config.epochs
    torch_device = pick_device(device)
    torch.manual_seed(config.seed)
    if torch_device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    graph = split.train if weights is None else weights
    model, adjacency = build_model(
        split, config, graph, item_text, torch_device, node_features
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)

    # Training pairs are the nonzeros of split.train: the split's ground truth
    # (test or validation) is a separate matrix that never enters the graph.
    pairs = split.train.tocoo()
    pair_users = torch.from_numpy(pairs.row.astype(np.int64))
    pair_items = torch.from_numpy(pairs.col.astype(np.int64))
    warm_items = torch.from_numpy(
        np.flatnonzero(np.diff(split.train.tocsc().indptr) > 0).astype(np.int64)
    )
    generator = torch.Generator().manual_seed(config.seed)

    checkpointer = _Checkpointer(checkpoint_dir, _fingerprint(config, split, epochs))
    best_state = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    run_state: dict[str, Any] = {
        "epoch": 0,
        "best_epoch": 0,
        "best": {},
        "history": [],
        "stale": 0,
    }
    resumed = checkpointer.load()
    if resumed is not None:
        tensors, run_state = resumed
        model.load_state_dict(
            {k_[6:]: v for k_, v in tensors.items() if k_.startswith("model/")}
        )
        best_state = {k_[5:]: v for k_, v in tensors.items() if k_.startswith("best/")}
        _load_optimizer_tensors(optimizer, model, tensors)
        torch.set_rng_state(tensors["rng/torch"])
        log.info("resumed %s at epoch %d", config.model, run_state["epoch"])

    epoch_seconds: list[float] = []
    model.train()
    for epoch in range(run_state["epoch"] + 1, epochs + 1):
        epoch_started = time.perf_counter()
        generator.manual_seed(config.seed + epoch)
        order = torch.randperm(pair_users.numel(), generator=generator)
        total, steps = 0.0, 0
        batches = range(0, order.numel(), config.batch_size)[:max_steps]
        for start in progress(batches, desc=f"epoch {epoch}", total=len(batches)):
            batch = order[start : start + config.batch_size]
            users = pair_users[batch].to(torch_device)
            items = pair_items[batch].to(torch_device)
            total += _train_step(
                model,
                adjacency,
                optimizer,
                config,
                users,
                items,
                warm_items,
                generator,
            )
            steps += 1
        seconds = time.perf_counter() - epoch_started
        epoch_seconds.append(seconds)
        record: dict[str, float] = {
            "epoch": epoch,
            "loss": total / max(steps, 1),
            "seconds": seconds,
            "steps": steps,
        }
        if validation is not None and epoch % config.eval_every == 0:
            metrics = _split_metrics(model, adjacency, config, validation, k)
            record.update({f"validation_{m}": v for m, v in metrics.items()})
            ndcg = metrics[f"ndcg@{k}"]
            if ndcg > run_state["best"].get(f"ndcg@{k}", -1.0):
                run_state.update(best=metrics, best_epoch=epoch, stale=0)
                best_state = {
                    k_: v.detach().clone() for k_, v in model.state_dict().items()
                }
            else:
                run_state["stale"] += 1
        if monitor is not None:
            metrics = _split_metrics(model, adjacency, config, monitor, k)
            record.update({f"monitor_{m}": v for m, v in metrics.items()})
        run_state["history"].append(record)
        run_state["epoch"] = epoch
        log.info(
            "epoch %d: loss %.4f, %.1f s%s",
            epoch,
            record["loss"],
            seconds,
            f", validation ndcg@{k} {record[f'validation_ndcg@{k}']:.4f}"
            if f"validation_ndcg@{k}" in record
            else "",
        )
        checkpointer.save(model, optimizer, best_state, run_state)
        if on_epoch is not None:
            on_epoch(record)
        if validation is not None and run_state["stale"] >= config.patience:
            log.info(
                "early stop: no better validation NDCG for %d evaluations",
                config.patience,
            )
            break

    if validation is not None:
        model.load_state_dict(best_state)
    else:
        run_state["best_epoch"] = run_state["epoch"]
    user_vectors, item_vectors = final_vectors(model, adjacency, config)
    return TrainingRun(
        user_vectors=user_vectors,
        item_vectors=item_vectors,
        epochs=run_state["epoch"],
        best_epoch=run_state["best_epoch"],
        best_validation=run_state["best"],
        history=run_state["history"],
        seconds=time.perf_counter() - started,
        epoch_seconds=epoch_seconds,
    )
