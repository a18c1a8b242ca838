"""The verdict page and an Evidently report open in a real headless browser
(Debian's chromium; skipped where it is not installed): the rendered page shows
the verdict, and a screenshot of it is not blank."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_monitor_drift import REFERENCE, make_shop

from interest_graph.config import Settings
from interest_graph.stages.monitoring import monitor

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed"),
    pytest.mark.slow,  # 37 s on 2 shared cores (a shop, a run, 3 browser starts)
]


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            "--virtual-time-budget=5000",  # let Evidently's scripts render
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = make_shop(
        tmp_path_factory.mktemp("browser"),
        users=1000,
        items=400,
        events=30_000,
        interest_drift=0.6,
    )
    summary = monitor(
        Settings(
            paths={"work_dir": str(root / "work")},
            monitoring={"embedding_sample": 100},
        ),
        reference=REFERENCE,
        current="last 30 days",
        data_dir=root / "data",
        features_dir=root / "features",
        model="",
        workspace=False,
        out_dir=root / "out",
    ).summary
    return root / "out", summary


def test_the_verdict_page_renders_the_verdict(
    run_dir: tuple[Path, dict], tmp_path: Path
) -> None:
    out, summary = run_dir
    page = (out / "report.html").as_uri()
    dom = _chromium("--dump-dom", page, tmp=tmp_path).stdout.decode()
    verdict = "DRIFT DETECTED" if summary["drift_detected"] else "NO DRIFT DETECTED"
    assert f'<h1 id="verdict">{verdict}</h1>' in dom
    for name in summary["checks"]:
        assert f"<td>{name}</td>" in dom


def test_a_screenshot_of_the_verdict_page_is_not_blank(
    run_dir: tuple[Path, dict], tmp_path: Path
) -> None:
    image_module = pytest.importorskip("PIL.Image")
    out, _ = run_dir
    shot = tmp_path / "report.png"
    _chromium(
        f"--screenshot={shot}",
        "--window-size=1280,800",
        (out / "report.html").as_uri(),
        tmp=tmp_path,
    )
    pixels = np.asarray(image_module.open(io.BytesIO(shot.read_bytes())).convert("RGB"))
    assert pixels.shape == (800, 1280, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 10  # text, table borders, the verdict's colour
    # Some share of the page is not the white background: the rendered content.
    inked = (pixels != 255).any(axis=2).mean()
    assert 0.005 < inked < 0.9


def test_an_evidently_report_renders_in_the_browser(
    run_dir: tuple[Path, dict], tmp_path: Path
) -> None:
    out, summary = run_dir
    assert summary["checks"]["user_interests"]["html"]
    page = (out / "user_interests.html").as_uri()
    dom = _chromium("--dump-dom", page, tmp=tmp_path).stdout.decode()
    # Evidently builds the page with JavaScript: the column name appears in the
    # rendered DOM only when its scripts ran (the raw file holds it as JSON).
    assert "interest_overlap" in dom
    assert "<svg" in dom or "<canvas" in dom
