"""Serving: latency of the recommender over REST v1, v2 and gRPC against a floor.

    python bench/serve.py [--quick] [--no-feast] [--pin]

Starts ``interest-graph serve`` as a separate process with every feature on (Feast
lookup, history exclusion, reasons, inference log) and drives it over loopback
from another process with an open-loop load generator (``bench/_serve/load.py``:
request i due at t0 + i/rate, latency from the due time, so a stall is never
hidden by the generator waiting for it):

* the Online Retail model (LightGCN trained on the real file, its users'
  interest vectors pushed to Feast) at 400 requests/s: v1, v2 and gRPC, k=20;
* the same load against the floor, a bare FastAPI + numpy endpoint under uvicorn
  doing only the scoring (user vector . item matrix, argpartition top-k);
* a synthetic 100k-item catalogue (20k users, 64-d vectors) at 200 requests/s,
  server and floor;
* a closed-loop run of 32 concurrent v1 clients for the maximum throughput.

Users are drawn from each model's users with a fixed seed. ``--pin`` puts the
server (and the floor) on the first CPU and the generator on the others; off by
default, since on the shared 2-core machine pinning raised the floor's p99
(6-8 ms pinned vs 5-6 ms unpinned at 400 requests/s, load average ~2 from other
work): a pinned generator cannot move away from the other work. Models are
built once under ``.work/bench/serve/``. ``--quick``: 5 s per point; full: 60 s
for the headline v1 point, 30 s for the others, 20 s for the closed loop. Each
point states its duration.

The last line printed is one JSON object: ``v1``, ``v2``, ``grpc``, ``floor``
(rate, p50_ms, p99_ms, rps, errors, sent_rate, behind...), ``p99_ratio_to_floor``,
``catalog_100k``, ``max_rps``, ``targets``, ``feast``, ``machine``,
``duration_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serve import procs  # noqa: E402
from _serve.models import WORK, BenchModel, catalog_100k_model, online_retail_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / ".venv" / "bin" / "interest-graph"
K = 20
RATE = 400.0
RATE_100K = 200.0
CLOSED_WORKERS = 32
TARGETS = {
    "v1_p99_ms": 8.0,
    "p99_ratio_to_floor": 2.5,
    "catalog_100k_p99_ms": 15.0,
    "grpc_p99_ratio_to_rest": 1.2,
}


@dataclass(frozen=True)
class Durations:
    """Seconds of each kind of point."""

    headline: float
    other: float
    closed: float


QUICK = Durations(headline=5, other=5, closed=5)
FULL = Durations(headline=60, other=30, closed=20)


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server side and the generator run on (None: anywhere)."""

    server: set[int] | None
    generator: set[int] | None

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        """Server on the first usable CPU, generator on the rest, when pinning."""
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls({cpus[0]}, set(cpus[1:]))

    def describe(self) -> str:
        if self.server is None:
            return "not pinned"
        return f"server CPUs {sorted(self.server)}, generator CPUs " + str(
            sorted(self.generator or ())
        )


@dataclass(frozen=True)
class Ports:
    """The server's HTTP and gRPC ports."""

    http: int
    grpc: int

    @classmethod
    def free(cls) -> Ports:
        return cls(procs.free_port(), procs.free_port())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http}"


DEFAULT_SERVER = (
    f"{SERVER} serve --model {{model}} --http-port {{http_port}} "
    "--grpc-port {grpc_port} --inference-log {inference_log}"
)


def server_command(
    template: str, model: BenchModel, ports: Ports, inference_log: Path
) -> list[str]:
    """The server's command line: ``template`` with the model, ports and log."""
    line = template.format(
        model=model.artifact,
        http_port=ports.http,
        grpc_port=ports.grpc,
        inference_log=inference_log,
    )
    return shlex.split(line)


def inference_log_of(model: BenchModel) -> Path:
    """Where the server on ``model`` writes its inference log."""
    return WORK / "logs" / model.name / "inference-log.jsonl"


@contextmanager
def recommender(
    model: BenchModel, placement: Placement, feast: bool, template: str
) -> Iterator[Ports]:
    """The real server on ``model`` with a fresh inference log, ready."""
    ports = Ports.free()
    inference_log = inference_log_of(model)
    shutil.rmtree(inference_log.parent, ignore_errors=True)
    with procs.running_server(
        server_command(template, model, ports, inference_log),
        f"{ports.base}/v2/health/ready",
        inference_log.parent / "server.log",
        env=model.server_env(feast),
        cpus=placement.server,
    ):
        yield ports


@contextmanager
def floor(model: BenchModel, placement: Placement) -> Iterator[Ports]:
    """The floor endpoint on ``model``'s vectors, ready."""
    ports = Ports(procs.free_port(), 0)
    command = [
        sys.executable,
        "-m",
        "_serve.floor",
        f"--model={model.artifact}",
        f"--port={ports.http}",
    ]
    with procs.running_server(
        command,
        f"{ports.base}/v2/health/ready",
        WORK / "logs" / f"floor_{model.name}.log",
        cpus=placement.server,
    ):
        yield ports


def users_file(model: BenchModel) -> Path:
    """The model's user ids as the JSON list the generator reads."""
    path = WORK / "logs" / f"users_{model.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.user_ids), encoding="utf-8")
    return path


def log_size(path: Path) -> int:
    """Bytes written under the inference log path (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    """Runs the points and keeps their results."""

    def __init__(
        self,
        durations: Durations,
        placement: Placement,
        feast: bool,
        server: str = DEFAULT_SERVER,
    ) -> None:
        self.durations = durations
        self.placement = placement
        self.feast = feast
        self.server = server
        self.results: dict[str, Any] = {}

    def point(
        self, name: str, protocol: str, url: str, users: Path, **load: Any
    ) -> dict[str, Any]:
        """One load run from a generator process; printed and kept under ``name``."""
        result = procs.run_load(
            protocol, url, users, k=K, cpus=self.placement.generator, **load
        )
        say(f"{name}: {json.dumps(result)}")
        self.results[name] = result
        return result

    def online_retail(self, model: BenchModel) -> None:
        """Floor, then v1 (headline), v2, gRPC and the closed loop on one server."""
        users = users_file(model)
        other = self.durations.other
        with floor(model, self.placement) as ports:
            self.point("floor", "floor", ports.base, users, rate=RATE, duration=other)
        with recommender(model, self.placement, self.feast, self.server) as ports:
            grpc_url = f"127.0.0.1:{ports.grpc}"
            headline = self.durations.headline
            self.point("v1", "v1", ports.base, users, rate=RATE, duration=headline)
            self.point("v2", "v2", ports.base, users, rate=RATE, duration=other)
            self.point("grpc", "grpc", grpc_url, users, rate=RATE, duration=other)
            self.point(
                "closed_loop",
                "v1",
                ports.base,
                users,
                rate=RATE,
                duration=self.durations.closed,
                closed=CLOSED_WORKERS,
            )
        self.results["inference_log_bytes"] = log_size(inference_log_of(model))

    def catalog_100k(self, model: BenchModel) -> None:
        """The 100k-item catalogue over v1, then its floor."""
        users = users_file(model)
        other = self.durations.other
        with recommender(model, self.placement, self.feast, self.server) as ports:
            self.point(
                "catalog_100k", "v1", ports.base, users, rate=RATE_100K, duration=other
            )
        with floor(model, self.placement) as ports:
            self.point(
                "floor_100k", "floor", ports.base, users, rate=RATE_100K, duration=other
            )


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def within(value: float | None, limit: float) -> bool:
    """True when a measured ``value`` exists and is at most ``limit``."""
    return value is not None and value <= limit


def machine() -> str:
    """What ran the bench: platform, CPU model and count, Python."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0))
    return (
        f"{platform.platform()}, {model}, {os.cpu_count()} CPUs ({usable} usable), "
        f"Python {platform.python_version()}"
    )


def report(
    results: dict[str, Any], models: dict[str, BenchModel], bench: Bench
) -> dict[str, Any]:
    """The final JSON object from the points' results."""
    v1, v2, grpc = results["v1"], results["v2"], results["grpc"]
    catalog = dict(results["catalog_100k"])
    catalog["floor_p99_ms"] = results["floor_100k"]["p99_ms"]
    catalog["p99_ratio_to_floor"] = ratio(catalog["p99_ms"], catalog["floor_p99_ms"])
    catalog["model"] = models["catalog_100k"].description
    to_floor = ratio(v1["p99_ms"], results["floor"]["p99_ms"])
    grpc_to_rest = ratio(grpc["p99_ms"], v1["p99_ms"])
    fallbacks = sum(n for note, n in v1.get("notes", {}).items() if "fallback" in note)
    return {
        "v1": v1,
        "v2": v2,
        "grpc": grpc,
        "floor": results["floor"],
        "p99_ratio_to_floor": to_floor,
        "grpc_p99_ratio_to_rest": grpc_to_rest,
        "grpc_p99_ratio_to_v2": ratio(grpc["p99_ms"], v2["p99_ms"]),
        "catalog_100k": catalog,
        "max_rps": results["closed_loop"]["rps"],
        "closed_loop": results["closed_loop"],
        "targets": {
            "v1_p99_le_8ms": within(v1["p99_ms"], TARGETS["v1_p99_ms"]),
            "v1_zero_errors": v1["errors"] == 0,
            "p99_le_2.5x_floor": within(to_floor, TARGETS["p99_ratio_to_floor"]),
            "catalog_100k_p99_le_15ms": within(
                catalog["p99_ms"], TARGETS["catalog_100k_p99_ms"]
            )
            and catalog["errors"] == 0,
            "grpc_p99_le_1.2x_rest": within(
                grpc_to_rest, TARGETS["grpc_p99_ratio_to_rest"]
            ),
            "generator_kept_up": not any(
                results[p].get("behind") for p in ("v1", "v2", "grpc", "floor")
            ),
            # Every v1 answer came from the model with Feast's features.
            "feast_answered_every_call": bench.feast and fallbacks == 0,
        },
        "feast": {"on": bench.feast, "fallback_answers_v1": fallbacks},
        "inference_log_bytes": results.get("inference_log_bytes"),
        "online_retail_model": models["online_retail"].description,
        "placement": bench.placement.describe(),
        "server_command": bench.server,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per point")
    parser.add_argument(
        "--no-feast", action="store_true", help="serve without Feast lookups"
    )
    parser.add_argument(
        "--server-command",
        default=DEFAULT_SERVER,
        help="server command line with {model}, {http_port}, {grpc_port} and "
        "{inference_log} (default: the interest-graph serve contract)",
    )
    parser.add_argument(
        "--pin", action="store_true", help="server and generator on separate CPUs"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)
    say("building or loading the bench models (cached under .work/bench/serve)")
    builders: dict[str, Callable[[], BenchModel]] = {
        "online_retail": online_retail_model,
        "catalog_100k": catalog_100k_model,
    }
    models = {name: build() for name, build in builders.items()}
    bench = Bench(
        QUICK if args.quick else FULL,
        Placement.choose(args.pin),
        feast=not args.no_feast,
        server=args.server_command,
    )
    bench.online_retail(models["online_retail"])
    bench.catalog_100k(models["catalog_100k"])
    summary = report(bench.results, models, bench)
    summary["machine"] = machine()
    # Other work shares the machine: its load says how noisy the figures are.
    summary["load_avg_1m"] = {
        "before": load_before,
        "after": round(os.getloadavg()[0], 2),
    }
    summary["mode"] = "quick" if args.quick else "full"
    summary["durations_s"] = asdict(bench.durations)
    summary["duration_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
