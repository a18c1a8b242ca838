"""The monitor on synthetic shops: an interest shift is detected by the checks
that should see it, a price-only shift by the features and not the text
embeddings, a stationary shop raises no alarm; checks that cannot run say why
and never count as "no drift"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interest_graph.config import Settings, SynthConfig
from interest_graph.data.synth import generate_shop
from interest_graph.features.tables import build_features
from interest_graph.stages.monitoring import monitor

# Days 30-60 against days 90-120 of a 120-day shop (starts 2026-01-05).
REFERENCE = "2026-02-04..2026-03-06"
CURRENT = "last 30 days"
# The shift magnitudes the README names.
INTEREST_SHIFT = 0.6
PRICE_SHIFT = 0.5


def make_shop(
    root: Path,
    seed: int = 0,
    *,
    users: int = 2000,
    items: int = 800,
    events: int = 80_000,
    **knobs: float,
) -> Path:
    """A small shop, its Feast feature tables and stand-in text vectors.

    The vectors are a fixed direction per category plus noise per item (the
    real encoder's shape on these texts, without its minutes on CI); a slow
    test runs the real encoder.
    """
    config = SynthConfig(
        seed=seed, users=users, items=items, events=events, days=120, **knobs
    )
    tables = generate_shop(config)
    data = root / "data"
    tables.write(data)
    features = root / "features"
    build_features(data, features, threads=1, memory_limit="1GB")
    catalogue = tables.items
    codes = pd.Categorical(catalogue["category"]).codes
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(codes.max() + 1, 32))
    vectors = centres[codes] + 0.5 * rng.normal(size=(len(catalogue), 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pq.write_table(
        pa.table(
            {
                "item_id": catalogue["item_id"].astype(str),
                "text_embedding": list(vectors.astype(np.float32)),
            }
        ),
        features / "item_text_embeddings.parquet",
    )
    return root


_RUNS: dict[Path, dict] = {}


def run(root: Path, **kwargs: object) -> dict:
    """The monitor's summary (runs without a log are made once per shop)."""
    if not kwargs and root in _RUNS:
        return _RUNS[root]
    settings = Settings(
        paths={"work_dir": str(root / "work")},
        monitoring={"embedding_sample": 250},  # t-SNE of the picture: seconds
    )
    result = monitor(
        settings,
        reference=REFERENCE,
        current=CURRENT,
        data_dir=root / "data",
        features_dir=root / "features",
        model="",
        workspace=False,
        out_dir=root / "out",
        **kwargs,  # type: ignore[arg-type]
    )
    if not kwargs:
        _RUNS[root] = result.summary
    return result.summary


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shops")
    return {
        "stationary": make_shop(root / "stationary"),
        "interest": make_shop(root / "interest", interest_drift=INTEREST_SHIFT),
        "price": make_shop(root / "price", price_drift=PRICE_SHIFT),
    }


def _verdicts(summary: dict) -> dict[str, str]:
    return {name: c["verdict"] for name, c in summary["checks"].items()}


def test_a_stationary_shop_raises_no_alarm(shops: dict[str, Path]) -> None:
    summary = run(shops["stationary"])
    assert summary["drift_detected"] is False
    verdicts = _verdicts(summary)
    for name in ("user_features", "item_features", "user_interests"):
        assert verdicts[name] == "no drift"
    assert verdicts["item_text_embeddings"] == "no drift"
    # Nothing to read for these: listed with the reason, not passed.
    for name in ("user_vectors", "item_vectors", "predictions", "outcomes"):
        assert verdicts[name] == "not run"
        assert summary["checks_not_run"][name]
    assert "no drift" not in summary["checks_not_run"].values()
    report = (shops["stationary"] / "out" / "report.html").read_text()
    assert "NO DRIFT DETECTED" in report
    assert json.loads((shops["stationary"] / "out" / "summary.json").read_text())


def test_an_interest_shift_is_seen_by_the_interest_check(
    shops: dict[str, Path],
) -> None:
    summary = run(shops["interest"])
    assert summary["drift_detected"] is True
    check = summary["checks"]["user_interests"]
    assert check["verdict"] == "drift"
    assert check["details"]["p_value"] is True
    assert check["value"] < check["threshold"]  # a p-value under alpha
    overlap = check["details"]["mean_overlap"]
    assert overlap["current"] < overlap["reference"] - 0.1
    html = Path(check["html"]).read_text()
    assert "interest_overlap" in html


def test_a_price_shift_is_seen_by_features_not_by_embeddings(
    shops: dict[str, Path],
) -> None:
    summary = run(shops["price"])
    verdicts = _verdicts(summary)
    assert summary["drift_detected"] is True
    assert verdicts["item_features"] == "drift"
    assert "price" in summary["checks"]["item_features"]["details"]["drifted_columns"]
    assert verdicts["item_text_embeddings"] == "no drift"
    assert verdicts["user_interests"] == "no drift"


def test_long_windows_not_yet_filled_are_left_out_with_the_reason(
    shops: dict[str, Path],
) -> None:
    summary = run(shops["stationary"])
    left_out = summary["checks"]["user_features"]["details"]["left_out"]
    assert set(left_out) >= {"views_90d", "spend_90d"}
    assert "views_7d" in summary["checks"]["user_features"]["details"]["columns"]


def _served_log(root: Path, shift_from: pd.Timestamp | None) -> Path:
    """A log of calls before real purchases: each lists the bought item first
    (a good recommender); from ``shift_from`` on it lists other categories'
    items and falls back for a third of the users (a broken one)."""
    events = pd.read_parquet(root / "data" / "events.parquet")
    items = pd.read_parquet(root / "data" / "items.parquet").set_index("item_id")
    bought = events[events.event_type == "purchase"].sample(4000, random_state=0)
    rng = np.random.default_rng(0)
    lines = []
    catalogue = items.index.to_numpy()
    for row in bought.itertuples():
        when = row.timestamp - pd.Timedelta(hours=1)
        broken = shift_from is not None and when >= shift_from
        listed = rng.choice(catalogue, 9, replace=False).tolist()
        first = rng.choice(catalogue) if broken else row.item_id
        ids = [first, *listed]
        fallback = (
            "unknown_user:popular_items" if broken and rng.random() < 0.33 else None
        )
        lines.append(
            json.dumps(
                {
                    "timestamp": when.timestamp(),
                    "response": [
                        {
                            "user_id": row.user_id,
                            "items": [
                                {
                                    "item_id": i,
                                    "score": (0.2 if broken else 0.8) - 0.01 * r,
                                    "category": items.category[i],
                                }
                                for r, i in enumerate(ids)
                            ],
                            "fallback": fallback,
                        }
                    ],
                }
            )
        )
    path = root / "log.jsonl"
    path.write_text("\n".join(lines) + "\nnot a record\n")
    return path


def test_predictions_and_outcomes_from_the_inference_log(
    shops: dict[str, Path],
) -> None:
    root = shops["stationary"]
    healthy = run(root, inference_log=_served_log(root, None))
    assert healthy["checks"]["predictions"]["verdict"] == "no drift"
    assert healthy["checks"]["outcomes"]["verdict"] == "no drift"
    assert healthy["inference_log"]["corrupt_records"] == 1

    broken = run(root, inference_log=_served_log(root, pd.Timestamp("2026-04-05")))
    predictions = broken["checks"]["predictions"]
    assert predictions["verdict"] == "drift"
    assert {"score", "fallback", "unknown_user"} <= set(
        predictions["details"]["drifted_columns"]
    )
    outcomes = broken["checks"]["outcomes"]
    assert outcomes["verdict"] == "drift"
    assert (
        outcomes["details"]["current"]["HitRate"]
        < outcomes["details"]["reference"]["HitRate"]
    )


def test_an_empty_or_too_small_window_is_not_run_with_the_reason(
    shops: dict[str, Path], tmp_path: Path
) -> None:
    settings = Settings(paths={"work_dir": str(tmp_path)})
    summary = monitor(
        settings,
        reference="2025-01-01..2025-02-01",  # before the shop opened
        current=CURRENT,
        data_dir=shops["stationary"] / "data",
        features_dir=shops["stationary"] / "features",
        model="",
        workspace=False,
        out_dir=tmp_path / "out",
    ).summary
    assert summary["checks_run"] == []
    assert summary["drift_detected"] is False
    assert all(
        "empty" in why or "fewer than" in why or "no " in why
        for why in summary["checks_not_run"].values()
    )
    assert "NO DRIFT DETECTED" in (tmp_path / "out" / "report.html").read_text()
