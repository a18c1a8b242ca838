"""Training speed: our LightGCN loop beside PyG's reference loop, and time to quality.

    python bench/train_speed.py [--quick] [--data ../shared/data] [--skip-shop]

1. Gowalla, d = 64, 3 layers, BPR, batch 8192 (EVALUATION.md's table): seconds per
   epoch of the reference loop — ``torch_geometric.nn.LightGCN`` called with
   ``edge_index``, full-graph propagation per batch, as PyG's examples/lightgcn.py —
   and of ours (precomputed normalised adjacency, symmetric backward). The
   reference epoch (~3.5 min here) is timed over its first batches and scaled to
   the epoch's batch count; ours is a whole epoch (with --quick, timed batches
   scaled the same way).
2. Wall time of the project's best Gowalla configuration to reach Recall@20 0.18
   on the test users (the fit is training-free; the clock covers loading, fitting
   and ranking every user).
3. The 1M-user / 100k-item synthetic shop (skipped with --quick or --skip-shop):
   seconds per epoch at batch 8192 and 65536 from timed batches, and peak memory.

The last line printed is one JSON object: {"epoch_s", "reference_epoch_s",
"ratio", "minutes_to_recall_0.18", "peak_rss_gb", "device", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
from torch_geometric.nn import LightGCN  # noqa: E402

from interest_graph.config import SynthConfig, TrainConfig  # noqa: E402
from interest_graph.evaluation.protocols import (  # noqa: E402
    EvaluationSplit,
    binary_matrix,
    build_split,
)
from interest_graph.evaluation.ranking import (  # noqa: E402
    rank_test_users,
    score_ranking,
)
from interest_graph.models.graph import edge_index  # noqa: E402
from interest_graph.models.training import pick_device, train_graph_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH = 8192
DIM, LAYERS = 64, 3


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reference_epoch_seconds(split: EvaluationSplit, batches: int) -> float:
    """PyG's LightGCN example loop, timed over ``batches`` batches, per epoch."""
    torch.manual_seed(0)
    n_users, n_items = split.train.shape
    model = LightGCN(n_users + n_items, DIM, LAYERS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    edges = edge_index(split.train)
    pairs = split.train.tocoo()
    users = torch.from_numpy(pairs.row.astype(np.int64))
    items = torch.from_numpy(pairs.col.astype(np.int64)) + n_users
    order = torch.randperm(users.numel())
    n_batches = -(-users.numel() // BATCH)
    timings = []
    for step in range(batches + 1):  # the first batch warms up, untimed
        started = time.perf_counter()
        batch = order[step * BATCH : (step + 1) * BATCH]
        negatives = torch.randint(n_users, n_users + n_items, (batch.numel(),))
        optimizer.zero_grad()
        embedding = model.get_embedding(edges)
        pos = (embedding[users[batch]] * embedding[items[batch]]).sum(-1)
        neg = (embedding[users[batch]] * embedding[negatives]).sum(-1)
        loss = model.recommendation_loss(
            pos, neg, node_id=torch.cat([users[batch], items[batch], negatives])
        )
        loss.backward()
        optimizer.step()
        if step:
            timings.append(time.perf_counter() - started)
    return float(np.mean(timings)) * n_batches


def our_epoch_seconds(
    split: EvaluationSplit, batch_size: int, max_steps: int | None, device: str
) -> tuple[float, int]:
    """Our loop (BPR, same shapes); seconds per whole epoch, and batches timed."""
    config = TrainConfig(
        model="lightgcn",
        loss="bpr",
        dim=DIM,
        layers=LAYERS,
        batch_size=batch_size,
        lr=1e-3,
        early_stopping=False,
    )
    n_batches = -(-split.train.nnz // batch_size)
    run = train_graph_model(split, config, epochs=1, device=device, max_steps=max_steps)
    steps = int(run.history[-1]["steps"])
    return run.epoch_seconds[0] * n_batches / steps, steps


def minutes_to_recall(data: Path, target: float) -> dict:
    """Best Gowalla configuration: wall minutes from raw files to the test recall."""
    from interest_graph.models.best import best_model

    started = time.perf_counter()
    split = build_split("gowalla-lightgcn", data / "gowalla")
    model = best_model("gowalla-lightgcn")
    model.fit(split)
    top_k, _ = rank_test_users(model, split, 20)
    metrics = score_ranking(split, top_k)
    minutes = (time.perf_counter() - started) / 60
    return {
        "model": model.name,
        "recall@20": round(float(metrics["recall@20"]), 4),
        "ndcg@20": round(float(metrics["ndcg@20"]), 4),
        "minutes": round(minutes, 2),
        "reached": bool(metrics["recall@20"] >= target),
    }


def synthetic_shop_split(users: int, items: int, events: int) -> EvaluationSplit:
    """All events of the synthetic shop as one training graph (timing only)."""
    from interest_graph.data.synth import generate_shop

    shop = generate_shop(
        SynthConfig(users=users, items=items, events=events, categories=64)
    )
    user_codes, user_ids = pd.factorize(shop.events["user_id"])
    item_codes, item_ids = pd.factorize(shop.events["item_id"])
    train = binary_matrix(user_codes, item_codes, (len(user_ids), len(item_ids)))
    del shop
    return EvaluationSplit(
        protocol="synthetic-shop",
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=np.asarray(item_ids, dtype=object),
        train=train,
        test_users=np.empty(0, dtype=np.int64),
        ground_truth=sp.csr_matrix((0, len(item_ids)), dtype=np.float32),
        candidates=np.ones(len(item_ids), dtype=bool),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--skip-shop", action="store_true")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = str(pick_device(args.device))
    started = time.perf_counter()

    gowalla = build_split("gowalla-lightgcn", args.data / "gowalla")
    reference = reference_epoch_seconds(gowalla, batches=2 if args.quick else 4)
    print(f"reference loop (PyG LightGCN + edge_index): {reference:.1f} s/epoch")
    ours, steps = our_epoch_seconds(
        gowalla, BATCH, max_steps=8 if args.quick else None, device=device
    )
    print(f"our loop: {ours:.1f} s/epoch ({steps} batches timed)")
    result: dict = {
        "epoch_s": round(ours, 2),
        "reference_epoch_s": round(reference, 1),
        "ratio": round(ours / reference, 4),
        "batch_size": BATCH,
        "epoch_batches_timed": steps,
    }
    if not args.quick:
        best = minutes_to_recall(args.data, 0.18)
        print(f"best configuration: {best}")
        result["minutes_to_recall_0.18"] = best["minutes"] if best["reached"] else None
        result["best_configuration"] = best
    if not (args.quick or args.skip_shop):
        del gowalla
        shop = synthetic_shop_split(1_000_000, 100_000, 20_000_000)
        result["shop_1m"] = {"pairs": int(shop.train.nnz)}
        for batch_size in (BATCH, 65_536):
            seconds, timed = our_epoch_seconds(shop, batch_size, 3, device)
            result["shop_1m"][f"epoch_s@{batch_size}"] = round(seconds, 1)
            print(f"1M-user shop, batch {batch_size}: {seconds:.0f} s/epoch")
    result.update(
        peak_rss_gb=round(peak_rss_gb(), 2),
        device=f"{device} ({platform.machine()}, {os.cpu_count()} cores)"
        if device == "cpu"
        else torch.cuda.get_device_name(),
        torch_threads=torch.get_num_threads(),
        seconds=round(time.perf_counter() - started, 1),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
