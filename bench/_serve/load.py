"""Open- and closed-loop load generator for the recommender's three protocols.

    python -m _serve.load --protocol v1 --url http://127.0.0.1:8080 \
        --users users.json --rate 400 --duration 5 [--closed 32] [--cpu 1]

Open loop: request ``i`` is due at ``t0 + i / rate`` whatever the server does, and
its latency runs from that due time, not from when it was sent, so a server (or a
generator) that falls behind shows up in the percentiles instead of quietly
lowering the load (no coordinated omission). Closed loop: ``--closed N`` workers
each send their next request when the last one returned, for maximum throughput.

Bodies and gRPC messages are built before the clock starts; REST goes through one
aiohttp session with a pool of keep-alive connections, gRPC through one
``grpc.aio`` channel and KServe's own ``GRPCInferenceService`` stub. Errors are
non-2xx answers, exceptions and timeouts. The measured run has the garbage
collector off, what was prepared frozen out of its view (:func:`no_collections`);
``generator_gc`` in the summary counts any pass that still ran. The last line
printed is the JSON summary of :func:`summarize`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOLS = ("v1", "v2", "grpc", "floor")
MODEL = "recommender"
TIMEOUT_S = 2.0
WARMUP_S = 1.0
# Requests sent one by one before the warm-up (first calls set up connections).
PRIME = 3
# Distinct requests a closed-loop run prepares and then cycles through.
CLOSED_PREPARED = 20_000
# The generator may lag the schedule by this share of the rate before the run
# is flagged as not having delivered the load it claims.
BEHIND_TOLERANCE = 0.01

Send = Callable[[int], Awaitable[str | None]]


@dataclass
class Outcome:
    """One request: when it was due and sent, how long it took, and what failed.

    Attributes:
        due: scheduled send time, seconds after the run's start.
        sent: actual send time, seconds after the run's start.
        latency: seconds from ``due`` (open loop) or ``sent`` (closed loop) to the
            end of the answer; NaN when the request never finished.
        error: ``None``, or the kind of failure (``"http 503"``, ``"timeout"``...).
    """

    due: float
    sent: float = float("nan")
    latency: float = float("nan")
    error: str | None = None


@dataclass
class RunResult:
    """Every outcome of a run and the notes the answers carried."""

    outcomes: list[Outcome]
    wall_s: float
    notes: Counter[str] = field(default_factory=Counter)


def schedule(rate: float, duration: float) -> np.ndarray:
    """Due times of an open-loop run: ``i / rate`` for ``rate * duration`` requests.

    Raises:
        ValueError: the rate or the duration is not positive.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    return np.arange(int(round(rate * duration)), dtype=np.float64) / rate


def latency_percentiles(
    latencies_s: Sequence[float] | np.ndarray,
) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max in milliseconds of the finite latencies given.

    Every figure is None (JSON null) when there is no latency at all.
    """
    values = np.asarray(latencies_s, dtype=np.float64)
    values = values[np.isfinite(values)] * 1000.0
    names = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")
    if values.size == 0:
        return dict.fromkeys(names, None)
    figures = [*np.percentile(values, [50, 90, 99, 99.9]), values.max()]
    return {name: round(float(v), 3) for name, v in zip(names, figures, strict=True)}


def sent_rate(sent_times: Sequence[float] | np.ndarray) -> float:
    """Requests per second actually sent: spacing of the first to the last send."""
    sent = np.sort(np.asarray(sent_times, dtype=np.float64))
    sent = sent[np.isfinite(sent)]
    if sent.size < 2 or sent[-1] <= sent[0]:
        return float("nan")
    return float((sent.size - 1) / (sent[-1] - sent[0]))


def count_errors(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Errors by kind; a request with no error but no latency counts as ``lost``."""
    kinds: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.error is not None:
            kinds[outcome.error] += 1
        elif not np.isfinite(outcome.latency):
            kinds["lost"] += 1
    return dict(kinds)


def summarize(result: RunResult, rate: float | None, duration: float) -> dict[str, Any]:
    """The JSON figures of a run; ``rate`` None for a closed-loop run.

    Percentiles are over the successful requests; ``rps`` is successful answers
    per second of the run's wall time; ``behind`` is true when the open-loop
    generator sent more than 1 % slower than the rate it was asked for.
    """
    outcomes = result.outcomes
    errors = count_errors(outcomes)
    ok = [o.latency for o in outcomes if o.error is None and np.isfinite(o.latency)]
    achieved = sent_rate([o.sent for o in outcomes])
    summary: dict[str, Any] = {
        "rate": rate,
        **latency_percentiles(ok),
        "rps": round(len(ok) / result.wall_s, 1) if result.wall_s > 0 else 0.0,
        "errors": sum(errors.values()),
        "requests": len(outcomes),
        "duration_s": duration,
        "sent_rate": round(achieved, 1) if np.isfinite(achieved) else None,
    }
    if rate is not None:
        lags = np.array([o.sent - o.due for o in outcomes], dtype=np.float64)
        lags = lags[np.isfinite(lags)]
        summary["send_lag_p99_ms"] = (
            round(float(np.percentile(lags, 99)) * 1000, 3) if lags.size else None
        )
        summary["behind"] = bool(
            not np.isfinite(achieved) or achieved < rate * (1 - BEHIND_TOLERANCE)
        )
    if errors:
        summary["error_kinds"] = errors
    if result.notes:
        summary["notes"] = dict(result.notes)
    return summary


def pick_users(user_ids: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` users drawn with replacement from the model's users, by seed."""
    if not user_ids:
        raise ValueError("no users to draw from")
    rng = np.random.default_rng(seed)
    return [user_ids[i] for i in rng.integers(0, len(user_ids), n)]


def v1_body(user_id: str, k: int) -> bytes:
    """The KServe v1 ``:predict`` body for one user."""
    return json.dumps({"instances": [{"user_id": user_id, "k": k}]}).encode()


def v2_body(user_id: str, k: int) -> bytes:
    """The Open Inference Protocol ``/infer`` body for one user."""
    inputs = [
        {"name": "user_id", "datatype": "BYTES", "shape": [1], "data": [user_id]},
        {"name": "k", "datatype": "INT32", "shape": [1], "data": [k]},
    ]
    return json.dumps({"inputs": inputs}).encode()


def v1_note(body: bytes) -> str | None:
    """``fallback:<reason>`` when a v1 answer says the model did not answer."""
    try:
        prediction = json.loads(body)["predictions"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return "unparsed answer"
    fallback = prediction.get("fallback") if isinstance(prediction, dict) else None
    return None if fallback is None else f"fallback:{fallback}"


def rest_sender(
    session: Any, url: str, bodies: list[bytes], note: Callable[[bytes], str | None]
) -> Send:
    """A sender that POSTs ``bodies[i]`` to ``url``; returns the answer's note.

    Raises:
        HttpError: the answer is not 2xx.
    """
    headers = {"content-type": "application/json"}

    async def send(i: int) -> str | None:
        async with session.post(url, data=bodies[i], headers=headers) as response:
            body = await response.read()
            if response.status // 100 != 2:
                raise HttpError(response.status)
            return note(body)

    return send


class HttpError(Exception):
    """A non-2xx answer."""

    def __init__(self, status: int) -> None:
        super().__init__(f"http {status}")
        self.status = status


def kserve_grpc() -> tuple[Any, Any]:
    """KServe's ``grpc_predict_v2_pb2`` and ``_pb2_grpc`` modules.

    Importing ``kserve`` parses ``sys.argv`` with the model server's own parser
    (whose ``--protocol`` takes other values than ours), so it sees no arguments.
    """
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
    finally:
        sys.argv = argv
    return pb, pb_grpc


def grpc_requests(users: list[str], k: int) -> list[Any]:
    """``ModelInferRequest`` messages, one per user, built before the run."""
    pb, _ = kserve_grpc()
    requests = []
    for user_id in users:
        request = pb.ModelInferRequest(model_name=MODEL)
        user = request.inputs.add(name="user_id", datatype="BYTES", shape=[1])
        user.contents.bytes_contents.append(user_id.encode())
        top = request.inputs.add(name="k", datatype="INT32", shape=[1])
        top.contents.int_contents.append(k)
        requests.append(request)
    return requests


def grpc_sender(channel: Any, requests: list[Any]) -> Send:
    """A sender that calls ``ModelInfer`` with ``requests[i]``."""
    _, pb_grpc = kserve_grpc()
    stub = pb_grpc.GRPCInferenceServiceStub(channel)

    async def send(i: int) -> str | None:
        await stub.ModelInfer(requests[i], timeout=TIMEOUT_S)
        return None

    return send


def error_kind(exc: BaseException) -> str:
    """A short, countable name for a failed request."""
    if isinstance(exc, HttpError):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.aio.AioRpcError
        return f"grpc {code().name}"
    return type(exc).__name__


async def _one(
    send: Send, i: int, outcome: Outcome, start: float, notes: Counter[str]
) -> None:
    """Send request ``i`` and fill its outcome; latency runs from ``outcome.due``."""
    outcome.sent = time.perf_counter() - start
    try:
        async with asyncio.timeout(TIMEOUT_S):
            note = await send(i)
    except Exception as exc:  # every failure is counted, none stops the run
        outcome.error = error_kind(exc)
        return
    outcome.latency = time.perf_counter() - start - outcome.due
    if note is not None:
        notes[note] += 1


async def open_loop(send: Send, due: np.ndarray, first: int = 0) -> RunResult:
    """Fire request ``first + j`` at ``due[j]`` whatever came back before.

    The dispatcher sleeps to each due time and never waits for an answer; the
    requests it starts run concurrently on the event loop.
    """
    notes: Counter[str] = Counter()
    outcomes = [Outcome(due=float(t)) for t in due]
    tasks = []
    start = time.perf_counter()
    for j, outcome in enumerate(outcomes):
        wait = outcome.due - (time.perf_counter() - start)
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(_one(send, first + j, outcome, start, notes)))
    await asyncio.gather(*tasks)
    return RunResult(outcomes, time.perf_counter() - start, notes)


async def closed_loop(send: Send, workers: int, duration: float) -> RunResult:
    """``workers`` loops, each sending its next request when the last returned.

    Latency here runs from the send (a closed loop has no schedule); ``due`` is
    the send time.
    """
    notes: Counter[str] = Counter()
    outcomes: list[Outcome] = []
    start = time.perf_counter()
    counter = itertools.count()

    async def worker() -> None:
        while time.perf_counter() - start < duration:
            outcome = Outcome(due=time.perf_counter() - start)
            outcomes.append(outcome)
            await _one(send, next(counter), outcome, start, notes)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return RunResult(outcomes, time.perf_counter() - start, notes)


@dataclass(frozen=True)
class LoadSpec:
    """What to run: protocol, target, users and the shape of the load."""

    protocol: str
    url: str
    users: list[str]
    k: int = 20
    rate: float = 400.0
    duration: float = 5.0
    closed: int = 0
    warmup: float = WARMUP_S
    seed: int = 0
    connections: int = 64
    outcomes: Path | None = None  # where to write each request's (due, latency)


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Warm up, then run the open- or closed-loop load of ``spec``; the summary."""
    n_warm = int(round(spec.rate * spec.warmup))
    n_run = CLOSED_PREPARED if spec.closed else int(round(spec.rate * spec.duration))
    users = pick_users(spec.users, n_warm + n_run, spec.seed)
    async with protocol_sender(spec, users) as send:
        for i in range(PRIME):  # one at a time: lazy set-up is not a queue
            await _one(send, i, Outcome(due=0.0), time.perf_counter(), Counter())
        if n_warm:
            await open_loop(send, schedule(spec.rate, spec.warmup))
        cpu_started = time.process_time()
        with no_collections(), GcPauses() as pauses:
            if spec.closed:
                cycling = cycled(send, n_warm, n_run)
                result = await closed_loop(cycling, spec.closed, spec.duration)
            else:
                due = schedule(spec.rate, spec.duration)
                result = await open_loop(send, due, n_warm)
        cpu = time.process_time() - cpu_started
    summary = summarize(result, None if spec.closed else spec.rate, spec.duration)
    if spec.outcomes is not None:  # for reading a tail in time: when it came
        spec.outcomes.write_text(
            json.dumps([[o.due, o.latency, o.error] for o in result.outcomes]),
            encoding="utf-8",
        )
    # Share of one core the generator itself used during the run: its headroom.
    summary["generator_core_share"] = round(cpu / result.wall_s, 3)
    # The generator's own garbage-collection pauses: a latency they overlap is
    # the generator's, not the server's.
    summary["generator_gc"] = pauses.summary()
    return summary


@contextmanager
def no_collections() -> Iterator[None]:
    """No garbage-collection pass in the block: what was built before it (bodies,
    messages, connections) frozen out of the collector's view, collections off.
    A gen-2 pass over the prepared gRPC messages stopped the generator for ~120
    ms, which read as a server tail (gRPC p99.9 62-126 ms); a run's garbage is
    freed by reference counting, and what forms cycles waits for the end."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


class GcPauses:
    """The garbage collector's passes in this process while the block runs."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            "passes": len(self.pauses),
            "max_ms": round(1000 * max(self.pauses, default=0.0), 2),
            "total_ms": round(1000 * sum(self.pauses), 1),
        }


def cycled(send: Send, offset: int, size: int) -> Send:
    """``send`` of request ``offset + i % size``: a closed loop reuses its bodies."""

    async def wrapped(i: int) -> str | None:
        return await send(offset + i % size)

    return wrapped


@asynccontextmanager
async def protocol_sender(spec: LoadSpec, users: list[str]) -> AsyncIterator[Send]:
    """The protocol's sender over pooled connections, closed on the way out."""
    if spec.protocol == "grpc":
        import grpc

        async with grpc.aio.insecure_channel(spec.url) as channel:
            yield grpc_sender(channel, grpc_requests(users, spec.k))
        return
    import aiohttp

    connector = aiohttp.TCPConnector(limit=spec.connections, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec.protocol == "v2":
            url = f"{spec.url}/v2/models/{MODEL}/infer"
            bodies = [v2_body(u, spec.k) for u in users]
            yield rest_sender(session, url, bodies, lambda _: None)
        else:  # v1 and the floor, which speaks v1
            url = f"{spec.url}/v1/models/{MODEL}:predict"
            bodies = [v1_body(u, spec.k) for u in users]
            yield rest_sender(session, url, bodies, v1_note)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    parser.add_argument("--url", required=True, help="http://host:port or host:port")
    parser.add_argument("--users", type=Path, required=True, help="JSON list of ids")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--closed", type=int, default=0, help="closed-loop workers")
    parser.add_argument("--warmup", type=float, default=WARMUP_S)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, action="append", help="pin to this CPU")
    parser.add_argument(
        "--outcomes", type=Path, help="write each request's [due, latency, error]"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cpu:
        os.sched_setaffinity(0, set(args.cpu))
    spec = LoadSpec(
        protocol=args.protocol,
        url=args.url,
        users=list(json.loads(args.users.read_text(encoding="utf-8"))),
        k=args.k,
        rate=args.rate,
        duration=args.duration,
        closed=args.closed,
        warmup=args.warmup,
        seed=args.seed,
        outcomes=args.outcomes,
    )
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    summary = runner(run_load(spec))
    summary["generator_cpus"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
