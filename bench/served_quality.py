"""Served equals offline: the KServe service's answers scored like offline ranking.

    python bench/served_quality.py [--quick] [--model KIND] [--artifact DIR]

Trains ``--model`` (default ``temporal-ease``, the best model on Online Retail;
or takes ``--artifact``) on ``online-retail-temporal`` with ``stages.train``, which
also scores it offline on the protocol's test users. Then starts
``interest-graph serve`` on that artifact as its own process (no Feast, no
``history_path``: the service excludes what each user had from the model's own
training data), asks it for every test user over REST v1 (k = 20, batches of
100), writes the answers as a recommendation file and scores the file with
``stages.evaluate`` (the same code as ``interest-graph evaluate --recs``).
``--quick`` reuses a trained artifact from an earlier run when there is one.
``--model hybrid`` (the champion, default hybrid settings) takes the artifact
``bench/serve.py`` caches under ``.work/bench/hybrid/<key>/`` (trained there once
per data file and settings: ~35 min on 2 busy cores), with its offline scores;
the server scores the hybrid's known users at load, so it starts in ~35 s.

The last line printed is one JSON object: ``protocol``, ``model``, ``users``,
``served_ndcg@20``, ``offline_ndcg@20``, ``served_recall@20``,
``offline_recall@20``, ``same_top20_share`` (test users whose served and offline
top 20 are the same list), ``seconds``, ``machine``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serve import procs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORK = REPO / ".work" / "bench" / "served_quality"
SOURCE = REPO.parent / "shared" / "data" / "online_retail" / "Online_Retail.parquet"
PROTOCOL = "online-retail-temporal"
K = 20
BATCH = 100


def trained(model: str, settings: Any, reuse: bool) -> tuple[Path, dict[str, Any]]:
    """The artifact and its offline test metrics (trained now, or reused)."""
    from interest_graph import stages

    out = WORK / model
    metrics_path = out / "metrics.json"
    if not (reuse and metrics_path.is_file()):
        stages.train(PROTOCOL, SOURCE, out, settings, model)
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return out / "model", metrics


def served_recommendations(artifact: Path, users: list[str], out: Path) -> Path:
    """Ask the service for every user's top K; the answers as a recommendation file."""
    import httpx
    import pandas as pd

    http_port, grpc_port = procs.free_port(), procs.free_port()
    base = f"http://127.0.0.1:{http_port}"
    command = [
        str(BIN / "interest-graph"),
        "serve",
        "--model",
        str(artifact),
        "--no-feast",
        "--no-inference-log",
        "--reload-seconds",
        "0",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
    ]
    rows: list[dict[str, Any]] = []
    with (
        procs.running_server(command, f"{base}/v2/health/ready", WORK / "server.log"),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        for start in range(0, len(users), BATCH):
            body = {
                "instances": [
                    {"user_id": u, "k": K} for u in users[start : start + BATCH]
                ]
            }
            response = client.post("/v1/models/recommender:predict", json=body)
            response.raise_for_status()
            for answer in response.json()["predictions"]:
                rows += [
                    {
                        "user_id": answer["user_id"],
                        "item_id": item["item_id"],
                        "rank": rank,
                        "score": item["score"],
                    }
                    for rank, item in enumerate(answer["items"], start=1)
                ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])
    frame.to_csv(out, index=False)
    return out


def same_lists(served: Path, offline: Path) -> float:
    """Share of users whose served and offline top K are the same list."""
    import pandas as pd

    def lists(path: Path) -> pd.Series:
        frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
        return (
            frame.sort_values(["user_id", "rank"])
            .groupby("user_id")["item_id"]
            .agg(tuple)
        )

    a, b = lists(served), lists(offline)
    return float((a == b.reindex(a.index)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="temporal-ease")
    parser.add_argument("--artifact", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from interest_graph import stages
    from interest_graph.config import Settings
    from interest_graph.evaluation.protocols import build_split

    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    settings = Settings(paths={"work_dir": WORK / "work"})
    if args.artifact is None and args.model == "hybrid":
        from _serve.models import hybrid_artifact

        artifact, offline = hybrid_artifact(SOURCE)
    elif args.artifact is None:
        artifact, metrics = trained(args.model, settings, reuse=args.quick)
        offline = metrics
    else:
        artifact = args.artifact
        offline = stages.evaluate(PROTOCOL, SOURCE, str(artifact), settings)
    split = build_split(PROTOCOL, SOURCE)
    users = [str(u) for u in split.user_ids[split.test_users]]
    served_file = served_recommendations(artifact, users, WORK / "served.csv")
    served = stages.evaluate(
        PROTOCOL, SOURCE, "served", settings, recommendations=served_file
    )
    offline_file = stages.recommend(
        PROTOCOL, SOURCE, str(artifact), WORK / "offline.csv", settings, k=K
    )
    print(
        json.dumps(
            {
                "protocol": PROTOCOL,
                "model": args.model if args.artifact is None else str(artifact),
                "users": len(users),
                "served_ndcg@20": round(served[f"ndcg@{K}"], 4),
                "offline_ndcg@20": round(offline[f"ndcg@{K}"], 4),
                "served_recall@20": round(served[f"recall@{K}"], 4),
                "offline_recall@20": round(offline[f"recall@{K}"], 4),
                "same_top20_share": round(same_lists(served_file, offline_file), 4),
                "seconds": round(time.perf_counter() - started, 1),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            }
        )
    )


if __name__ == "__main__":
    main()
