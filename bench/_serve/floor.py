"""The floor: the least a recommender endpoint can do, to measure the server against.

    python -m _serve.floor --model ARTIFACT --port 8090 [--cpu 0]

FastAPI + numpy under uvicorn (one worker, one process, one BLAS thread like the
server): the user's vector dotted with the item matrix, top-k by
``argpartition`` then sorted, answered in the v1 shape. No Feast, no history
exclusion, no reasons, no logging, no validation beyond what a KeyError gives.
``GET /v2/health/ready`` answers 200 once the vectors are in memory.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first."""
    k = min(k, scores.size)
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best], kind="stable")]


def create_app(artifact: Path) -> FastAPI:
    """The floor's FastAPI app over an artifact's user and item vectors."""
    import pandas as pd
    from safetensors.numpy import load_file

    tensors = load_file(str(artifact / "model.safetensors"))
    users = np.ascontiguousarray(tensors["user_vectors"], dtype=np.float32)
    items = np.ascontiguousarray(tensors["item_vectors"], dtype=np.float32)
    user_ids = pd.read_parquet(artifact / "users.parquet")["user_id"].astype(str)
    item_ids = pd.read_parquet(artifact / "items.parquet")["item_id"].astype(str)
    row_of = {user: row for row, user in enumerate(user_ids)}
    item_names = item_ids.tolist()
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v1/models/recommender:predict")
    async def predict(request: Request) -> Response:
        instance = (await request.json())["instances"][0]
        row = row_of.get(str(instance["user_id"]))
        if row is None:
            raise HTTPException(status_code=404, detail="unknown user")
        k = int(instance.get("k", 20))
        scores = items @ users[row]
        best = top_k(scores, k)
        answer = {
            "predictions": [
                {
                    "user_id": instance["user_id"],
                    "items": [
                        {"item_id": item_names[i], "score": float(scores[i])}
                        for i in best
                    ],
                    "fallback": None,
                }
            ]
        }
        return Response(json.dumps(answer), media_type="application/json")

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, action="append", help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu:
        os.sched_setaffinity(0, set(args.cpu))
    from threadpoolctl import threadpool_limits

    # One BLAS thread, as the server runs (serving.compute_threads): with the
    # default two, each 100k-item product waited for a second thread the event
    # loop and the generator compete for (floor p99 0.2-2 s at 200/s).
    threadpool_limits(1)
    import uvicorn

    uvicorn.run(
        create_app(args.model),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
