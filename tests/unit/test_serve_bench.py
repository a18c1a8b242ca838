"""The serving bench's load generator: schedule, percentiles, error counting, loops.

The loops run against in-process fake senders (a coroutine that sleeps or fails),
so they check the generator's own arithmetic in well under a second each.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import serve  # noqa: E402
from _serve import faults, load, stalls  # noqa: E402
from _serve.floor import top_k  # noqa: E402
from _serve.load import HttpError, Outcome, RunResult  # noqa: E402


def test_schedule_spaces_requests_at_the_rate() -> None:
    due = load.schedule(400, 5)
    assert due.size == 2000
    assert due[0] == 0.0
    assert np.allclose(np.diff(due), 1 / 400)
    assert due[-1] == pytest.approx(4.9975)


@pytest.mark.parametrize(("rate", "duration"), [(0, 5), (-1, 5), (400, 0)])
def test_schedule_rejects_non_positive(rate: float, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        load.schedule(rate, duration)


def test_percentiles_in_ms_ignore_unfinished() -> None:
    latencies = [i / 1000 for i in range(1, 101)] + [float("nan")]
    figures = load.latency_percentiles(latencies)
    assert figures["p50_ms"] == pytest.approx(50.5)
    assert figures["p99_ms"] == pytest.approx(99.01)
    assert figures["max_ms"] == pytest.approx(100.0)


def test_percentiles_of_nothing_are_null() -> None:
    assert set(load.latency_percentiles([]).values()) == {None}


def test_sent_rate_from_send_spacing() -> None:
    assert load.sent_rate(np.arange(101) / 100) == pytest.approx(100.0)
    # The same 101 sends stretched over 2 s: the generator ran at half the rate.
    assert load.sent_rate(np.arange(101) / 50) == pytest.approx(50.0)
    assert np.isnan(load.sent_rate([0.5]))


def test_errors_counted_by_kind_and_lost_requests() -> None:
    outcomes = [
        Outcome(due=0, sent=0, latency=0.001),
        Outcome(due=0, sent=0, error="http 503"),
        Outcome(due=0, sent=0, error="http 503"),
        Outcome(due=0, sent=0, error="timeout"),
        Outcome(due=0, sent=0),  # neither answered nor failed
    ]
    assert load.count_errors(outcomes) == {"http 503": 2, "timeout": 1, "lost": 1}


def _run(due: np.ndarray, latency: float, error_every: int = 0) -> RunResult:
    outcomes = [
        Outcome(
            due=float(t),
            sent=float(t),
            latency=latency,
            error="http 500" if error_every and i % error_every == 0 else None,
        )
        for i, t in enumerate(due)
    ]
    return RunResult(outcomes, wall_s=float(due[-1]) + latency)


def test_summary_of_a_clean_run() -> None:
    due = load.schedule(100, 2)
    summary = load.summarize(_run(due, 0.004), 100, 2)
    assert summary["errors"] == 0
    assert summary["requests"] == 200
    assert summary["p99_ms"] == pytest.approx(4.0)
    assert summary["sent_rate"] == pytest.approx(100.0)
    assert summary["behind"] is False
    assert summary["rps"] == pytest.approx(200 / (1.99 + 0.004), abs=0.1)


def test_summary_counts_errors_and_leaves_them_out_of_percentiles() -> None:
    due = load.schedule(100, 1)
    summary = load.summarize(_run(due, 0.004, error_every=10), 100, 1)
    assert summary["errors"] == 10
    assert summary["error_kinds"] == {"http 500": 10}
    assert summary["rps"] == pytest.approx(90 / 0.994, abs=0.1)


def test_summary_flags_a_generator_that_fell_behind() -> None:
    due = load.schedule(100, 1)
    result = _run(due, 0.004)
    for outcome in result.outcomes:  # every send 2 % later than the one before
        outcome.sent = outcome.due * 1.02
    summary = load.summarize(result, 100, 1)
    assert summary["behind"] is True
    assert summary["send_lag_p99_ms"] == pytest.approx(19.6, abs=0.1)


def test_open_loop_keeps_sending_while_the_server_stalls() -> None:
    """A stalled single-threaded server: the queued requests' wait is counted."""
    busy = asyncio.Lock()

    async def server(i: int) -> str | None:
        async with busy:
            await asyncio.sleep(0.15 if i == 0 else 0.0)
        return None

    due = np.arange(5) * 0.02  # request 0 stalls the server for 150 ms
    result = asyncio.run(load.open_loop(server, due))
    sent_lag = [o.sent - o.due for o in result.outcomes]
    assert max(sent_lag) < 0.015  # sent on schedule, not after the stall
    latencies = [o.latency for o in result.outcomes]
    # Request 4 was due at 80 ms and answered after the 150 ms stall: from its
    # due time that is at least 70 ms, although the server spent ~0 ms on it.
    assert latencies[4] >= 0.065
    assert all(b < a for a, b in zip(latencies[1:], latencies[2:], strict=False))


def test_open_loop_counts_http_errors_and_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "TIMEOUT_S", 0.05)

    async def flaky(i: int) -> str | None:
        if i % 3 == 1:
            raise HttpError(503)
        if i % 3 == 2:
            await asyncio.sleep(1.0)
        return "fallback:unknown user" if i == 0 else None

    result = asyncio.run(load.open_loop(flaky, load.schedule(200, 0.03)))
    summary = load.summarize(result, 200, 0.03)
    assert summary["requests"] == 6
    assert summary["error_kinds"] == {"http 503": 2, "timeout": 2}
    assert summary["notes"] == {"fallback:unknown user": 1}


def test_closed_loop_never_exceeds_its_workers() -> None:
    in_flight = 0
    most = 0

    async def server(i: int) -> str | None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return None

    result = asyncio.run(load.closed_loop(server, workers=4, duration=0.2))
    assert most == 4
    assert 40 <= len(result.outcomes) <= 4 * 21 + 4
    assert load.count_errors(result.outcomes) == {}


def test_users_drawn_by_seed_from_the_known_users() -> None:
    users = [f"u{i}" for i in range(50)]
    first = load.pick_users(users, 200, seed=3)
    assert first == load.pick_users(users, 200, seed=3)
    assert first != load.pick_users(users, 200, seed=4)
    assert set(first) <= set(users)


def test_request_bodies_follow_the_protocols() -> None:
    assert json.loads(load.v1_body("17850", 20)) == {
        "instances": [{"user_id": "17850", "k": 20}]
    }
    v2 = json.loads(load.v2_body("17850", 20))
    assert v2["inputs"][0] == {
        "name": "user_id",
        "datatype": "BYTES",
        "shape": [1],
        "data": ["17850"],
    }
    assert v2["inputs"][1] == {
        "name": "k",
        "datatype": "INT32",
        "shape": [1],
        "data": [20],
    }
    (request,) = load.grpc_requests(["17850"], 20)
    assert request.model_name == "recommender"
    assert request.inputs[0].contents.bytes_contents == [b"17850"]
    assert list(request.inputs[1].contents.int_contents) == [20]


def test_v1_note_reports_fallbacks_only() -> None:
    model: dict[str, Any] = {"predictions": [{"items": [], "fallback": None}]}
    fallback = {"predictions": [{"items": [], "fallback": "unknown_user"}]}
    assert load.v1_note(json.dumps(model).encode()) is None
    assert load.v1_note(json.dumps(fallback).encode()) == "fallback:unknown_user"
    assert load.v1_note(b"not json") == "unparsed answer"


def test_floor_top_k_is_the_sorted_best() -> None:
    scores = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert list(top_k(scores, 20)) == list(np.argsort(-scores)[:20])
    assert list(top_k(scores[:5], 20)) == list(np.argsort(-scores[:5]))


def test_hung_redis_accepts_and_never_answers() -> None:
    with (
        faults.HungRedis() as hung,
        socket.create_connection(("127.0.0.1", hung.port), timeout=0.2) as client,
    ):
        client.sendall(b"*1\r\n$4\r\nPING\r\n")
        with pytest.raises(TimeoutError):
            client.recv(16)


def test_a_probe_of_nothing_listening_is_no_answer() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, seconds = faults.get(f"http://127.0.0.1:{port}/v2/health/live")
    assert status is None and seconds < faults.PROBE_TIMEOUT_S
    prober = faults.Prober("http://x")
    prober.answers = [(0.1, "/a", 200, 0.01), (0.6, "/a", None, 0.5)]
    assert prober.summary() == {
        "probes": 2,
        "probe_max_s": 0.5,
        "probes_not_200": {"/a None": 1},
    }


def test_log_bytes_per_call_from_the_servers_counts() -> None:
    status = {"inference_log": {"written": 4, "bytes_written": 3602}}
    assert serve.log_bytes_per_call(status) == 900.5
    assert serve.log_bytes_per_call({"inference_log": None}) is None


def test_a_step_holds_only_in_time_without_errors_or_lag() -> None:
    step = {"p99_ms": 14.0, "errors": 0, "behind": False}
    assert serve._held(step, 15.0)
    assert not serve._held({**step, "p99_ms": 15.5}, 15.0)
    assert not serve._held({**step, "errors": 1}, 15.0)
    assert not serve._held({**step, "behind": True}, 15.0)
    assert not serve._held({**step, "p99_ms": None}, 15.0)


def test_one_querys_exclusions_are_row_zero() -> None:
    seen = (np.array([0, 1, 1, 2]), np.array([5, 6, 7, 8]))
    rows, items = serve._seen_row(seen, 1)
    assert list(rows) == [0, 0] and list(items) == [6, 7]


def test_loop_lag_between_two_readings_counts_the_late_samples() -> None:
    before = {"0.01": 5.0, "0.05": 5.0, "0.25": 5.0, "count": 5.0}
    after = {"0.01": 12.0, "0.05": 14.0, "0.25": 15.0, "count": 15.0}
    assert serve.lag_delta(before, after) == {
        "samples": 10,
        "over_10ms": 3,
        "over_50ms": 1,
        "over_250ms": 0,
    }
    assert serve.lag_delta(before, None) is None


def test_machine_stalls_summed_in_ms() -> None:
    figures = stalls.summary([(1.0, 0.02), (2.5, 0.05)], steal=30.0, duration=10.0)
    assert figures == {
        "stalls": 2,
        "stalled_ms": 70.0,
        "max_ms": 50.0,
        "steal_ms": 30.0,
        "duration_s": 10.0,
    }
    assert stalls.summary([], 0.0, 1.0)["max_ms"] == 0.0


def test_the_generator_collects_no_garbage_while_it_measures() -> None:
    import gc

    with load.no_collections(), load.GcPauses() as inside:
        for _ in range(50_000):  # cycles: enough to start several passes
            cycle: list[Any] = []
            cycle.append(cycle)
    assert inside.summary()["passes"] == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with load.GcPauses() as outside:
        gc.collect()
    assert outside.summary()["passes"] == 1
