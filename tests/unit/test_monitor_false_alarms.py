"""False alarms: with the synthetic shop's drift knobs off, the monitor must
stay quiet in at least 19 of 20 seeds (false-alarm rate <= 5%, issue #13).

The shops are the other monitor tests' (2000 users, 80k events, 120 days):
the thresholds are distances, not p-values, so their noise floor depends on
the window's size. Measured: at 1000 users / 30k events 14 of 20 seeds raised
a false alarm (features, interests, embeddings alike), so smaller shops
cannot stand in here to save time."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_monitor_drift import REFERENCE, make_shop

from interest_graph.config import Settings
from interest_graph.stages.monitoring import monitor

SEEDS = range(100, 120)  # not the seeds the other monitor tests use


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue #13 target not met yet: measured 5 of 20 seeds alarm (25%): "
    "user_features 3, user_interests 2, item_text_embeddings 1; each check's "
    "threshold is near its own noise floor on this shop and any of four checks "
    "firing counts. Thresholds need recalibrating (per-check ~1%).",
)
def test_knob_off_raises_no_alarm_in_19_of_20_seeds(tmp_path: Path) -> None:
    alarms: dict[int, list[str]] = {}
    for seed in SEEDS:
        root = make_shop(tmp_path / str(seed), seed=seed)
        summary = monitor(
            Settings(
                paths={"work_dir": str(root / "work")},
                monitoring={"embedding_sample": 250, "seed": seed},
            ),
            reference=REFERENCE,
            current="last 30 days",
            data_dir=root / "data",
            features_dir=root / "features",
            model="",
            workspace=False,
            out_dir=root / "out",
        ).summary
        # The checks that read this shop ran: quiet because they looked.
        assert set(summary["checks_run"]) >= {
            "user_features",
            "item_features",
            "user_interests",
            "item_text_embeddings",
        }
        if summary["drift_detected"]:
            alarms[seed] = summary["checks_drifted"]
    assert len(alarms) <= 1, f"false alarms in {len(alarms)} of 20 seeds: {alarms}"
