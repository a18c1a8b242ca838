"""False alarms: with the synthetic shop's drift knobs off, the monitor must
stay quiet in at least 19 of 20 seeds (false-alarm rate <= 5%, issue #13).

The shops are the other monitor tests' (2000 users, 80k events, 120 days).
Each check is held to ``monitoring.alpha`` (0.005) by its own null
distribution: p-value tests shared over a check's columns, the embedding
classifier's ROC AUC against its null quantile for the rows compared. The
settings were chosen on seeds 1000-1029 (0 of 30 alarmed), never on these.
Before, one distance threshold of 0.1 for every check alarmed in 5 of these
20 seeds: its noise floor depends on the window's size."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_monitor_drift import REFERENCE, make_shop

from interest_graph.config import Settings
from interest_graph.stages.monitoring import monitor

SEEDS = range(100, 120)  # not the seeds the other monitor tests use


@pytest.mark.slow  # 89 s for the 20 seeds on 2 shared cores (a shop and a run each)
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
