"""Fit the simulator's replica model on a real Triton, then check the simulator against it.

    python -m benchmarks.autoscaling.calibrate [--sleep-ms 50] [--seconds 25]

Runs the host tritonserver (``find_tritonserver()``) with a copy of ``tests/models/good/sleeper`` (python backend,
max_batch_size 8, dynamic batching with a 100 us queue delay; ``sleep_ms`` per batch set in the copy), and:

1. checks three facts the simulator relies on: the inference counters move at request completion, not on a
   periodic refresh (``/metrics`` polled every 0.25 s under load); ``nv_inference_pending_request_count`` counts
   queued requests only, not executing ones (a burst of requests all sent at once: sent - pending - completed is
   the batch in execution); and a full batch that leaves requests behind seals them, with the next arrival, into
   the following batch (a timed sequence of 13 requests, counted in executions);
2. measures the saturated batch cycle from the same burst (the instance never idles, so completions of full
   batches are one cycle apart);
3. offers open-loop Poisson load at several rates, one instance and then two, for ``--seconds`` each, reading the
   counters before and after (queue time, successes, compute time, executions) and Triton's per-batch-size
   statistics (``/v2/models/sleeper/stats``);
4. fits the batch compute time ``base + per_request * batch`` (weighted least squares over the per-batch-size
   means) and the instance's overhead per batch (saturated cycle minus the compute of a full batch);
5. simulates one replica at each measured rate and prints measured next to simulated.

Writes ``benchmarks/results/calibration.json`` (the fitted replica model, which the benchmarks load) and
``benchmarks/results/calibration.md``. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from benchmarks.autoscaling.baselines import steady_state
from benchmarks.autoscaling.simulator import ReplicaConfig, ServiceModel
from triton_operator.testing import TritonServer

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SLEEPER = ROOT / "tests" / "models" / "good" / "sleeper"
MODEL = "sleeper"
MAX_BATCH = 8
QUEUE_DELAY_MS = 0.1
# Offered load as shares of the replica's full-batch peak (8 requests per ~52 ms cycle at 50 ms).
SHARES = {1: (0.1, 0.3, 0.5, 0.65, 0.8, 0.88), 2: (0.5, 0.8)}
SIMULATED_SECONDS = 900.0
BURST = 400
_SAMPLE = re.compile(r'^(nv_inference_\w+)\{[^}]*model="sleeper"[^}]*\} (\S+)$', re.MULTILINE)


def say(message: str) -> None:
    print(f"[calibrate] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Counters:
    """The sleeper's counters in one /metrics read."""

    queue_us: float
    success: float
    compute_us: float
    executions: float
    pending: float

    @classmethod
    def read(cls, server: TritonServer) -> Counters:
        values = {name: float(value) for name, value in _SAMPLE.findall(server.metrics_text())}
        return cls(
            queue_us=values["nv_inference_queue_duration_us"],
            success=values["nv_inference_request_success"],
            compute_us=values["nv_inference_compute_infer_duration_us"],
            executions=values["nv_inference_exec_count"],
            pending=values["nv_inference_pending_request_count"],
        )


@dataclass(frozen=True)
class Observed:
    """What a load point produced: measured on Triton, or simulated."""

    rate: float  # completed requests per second
    queue_ms: float
    batch: float
    compute_ms: float  # per request: the compute time of its batch


def observed(before: Counters, after: Counters, seconds: float) -> Observed:
    done = after.success - before.success
    return Observed(
        rate=done / seconds,
        queue_ms=(after.queue_us - before.queue_us) / done / 1000.0,
        batch=done / (after.executions - before.executions),
        compute_ms=(after.compute_us - before.compute_us) / done / 1000.0,
    )


def model_repository(into: Path, sleep_ms: float, instances: int) -> Path:
    """A copy of the sleeper with its sleep and instance count set (the test model itself stays untouched)."""
    repo = into / f"repo-{instances}"
    shutil.copytree(SLEEPER, repo / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / MODEL / "config.pbtxt"
    text = re.sub(r'(key: "sleep_ms"\s*value: \{ string_value: )"[^"]*"', rf'\1"{sleep_ms:g}"', config.read_text())
    text = re.sub(r"count: \d+", f"count: {instances}", text)
    config.write_text(text)
    return repo


class Load:
    """Open-loop load on the sleeper through gRPC async_infer: the sender never waits for answers."""

    def __init__(self, server: TritonServer) -> None:
        self.client = grpcclient.InferenceServerClient(server.grpc_address)
        data = np.zeros((1, 4), dtype=np.float32)
        self.inputs = [grpcclient.InferInput("INPUT0", [1, 4], "FP32")]
        self.inputs[0].set_data_from_numpy(data)
        self.lock = threading.Lock()
        self.completed: list[float] = []
        self.errors: list[str] = []

    def _done(self, result: Any, error: Any) -> None:
        with self.lock:
            self.completed.append(time.monotonic())
            if error is not None:
                self.errors.append(str(error))

    def send(self) -> None:
        self.client.async_infer(MODEL, self.inputs, callback=self._done)

    def wait(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` answers have come back in total."""
        deadline = time.monotonic() + timeout
        while len(self.completed) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.completed)} of {count} requests answered")
            time.sleep(0.01)
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} requests failed, first: {self.errors[0]}")

    def poisson(self, rate: float, seconds: float, seed: int) -> int:
        """Send at Poisson times for ``seconds``; returns how many were sent."""
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=int(rate * seconds * 2) + 100)
        start = time.monotonic()
        sent, at = 0, start
        for gap in gaps:
            at += gap
            if at - start > seconds:
                break
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.send()
            sent += 1
        return sent


def counter_update_share(server: TritonServer, stop: threading.Event, out: list[float]) -> None:
    """Poll /metrics every 0.25 s; append the success counter each time (live counters change at every poll
    under load, counters refreshed every 2 s at one poll in eight)."""
    while not stop.wait(0.25):
        out.append(Counters.read(server).success)


def burst(server: TritonServer, load: Load) -> dict[str, float]:
    """``BURST`` requests at once: the pending gauge's meaning, and the saturated cycle of full batches.

    The counters are read 0.15 s after the burst was sent (every request has reached the scheduler, about three
    batches have run): whatever is neither pending nor completed is executing. Answers come back in groups, one
    per batch; the cycle is the median time between groups.
    """
    before = Counters.read(server)
    base = len(load.completed)
    for _ in range(BURST):
        load.send()
    time.sleep(0.15)
    now = Counters.read(server)
    load.wait(base + BURST)
    times = np.sort(load.completed[base:])
    groups = times[np.concatenate([[True], np.diff(times) > 0.005])]  # the first answer of each batch
    return {
        "requests": BURST,
        "pending": now.pending,
        "completed": now.success - before.success,
        "executing": BURST - now.pending - (now.success - before.success),
        "cycle_ms": float(np.median(np.diff(groups[1:]))) * 1000.0,
    }


def sealed_after_full(server: TritonServer, load: Load, repeats: int = 3) -> list[float]:
    """Executions for: 1 request (runs alone), 10 more 10 ms later (8 run next, 2 are left behind), one at 60 ms
    (after the full batch started) and one at 80 ms. A batcher that fills the waiting batch until the instance
    frees runs 3 batches; Triton 2.51 runs 4 (the 2 left behind and the 60 ms request are sealed together)."""
    executions = []
    for _ in range(repeats):
        before, base, started = Counters.read(server), len(load.completed), time.monotonic()
        for at, count in ((0.0, 1), (0.01, 10), (0.06, 1), (0.08, 1)):
            time.sleep(max(0.0, started + at - time.monotonic()))
            for _ in range(count):
                load.send()
        load.wait(base + 13)
        executions.append(Counters.read(server).executions - before.executions)
    return executions


def batch_times(client: grpcclient.InferenceServerClient) -> dict[int, tuple[int, float]]:
    """Executions and total compute-infer nanoseconds per batch size, from Triton's statistics extension."""
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]["batch_stats"]
    return {int(s["batch_size"]): (int(s["compute_infer"]["count"]), float(s["compute_infer"]["ns"])) for s in stats}


def measure(sleep_ms: float, instances: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """One server: the burst (one instance only), then each load point."""
    peak = instances * MAX_BATCH * 1000.0 / (sleep_ms + 2.0)  # a guess of the overhead, only to place the points
    with TritonServer(model_repository(workdir, sleep_ms, instances)) as server:
        load = Load(server)
        version = str(load.client.get_server_metadata().version)
        result: dict[str, Any] = {"start_seconds": server.startup_seconds, "version": version, "points": []}
        if instances == 1:
            result["burst"] = burst(server, load)
            result["sealed"] = sealed_after_full(server, load)
            say(f"burst: {result['burst']}; executions for 1 + 10 + 1 + 1 requests: {result['sealed']}")
        for index, share in enumerate(SHARES[instances]):
            polls: list[float] = []
            stop = threading.Event()
            poller = threading.Thread(target=counter_update_share, args=(server, stop, polls), daemon=True)
            before, base = Counters.read(server), len(load.completed)
            started = time.monotonic()
            poller.start()
            sent = load.poisson(share * peak, seconds, seed=100 * instances + index)
            load.wait(base + sent)
            stop.set()
            poller.join()
            point = observed(before, Counters.read(server), time.monotonic() - started)
            moved = float(np.mean(np.diff(polls) > 0)) if len(polls) > 1 else 0.0
            result["points"].append(
                {"instances": instances, "offered": share * peak, "measured": point, "moved": moved}
            )
            say(
                f"{instances} instance(s), {share * peak:.0f} req/s offered: {point}; counters moved in {moved:.0%} of polls"
            )
        result["batches"] = batch_times(load.client)
        load.client.close()
    return result


def fit(batches: dict[int, tuple[int, float]], cycle_ms: float) -> ServiceModel:
    """Compute time per batch, linear in the batch size, weighted by executions; the overhead is what a saturated
    cycle takes beyond a full batch's compute."""
    sizes = np.array(sorted(batches), dtype=float)
    counts = np.array([batches[int(b)][0] for b in sizes], dtype=float)
    means = np.array([batches[int(b)][1] / batches[int(b)][0] / 1e6 for b in sizes])
    slope, intercept = np.polyfit(sizes, means, 1, w=np.sqrt(counts)) if len(sizes) > 1 else (0.0, means[0])
    model = ServiceModel(base_ms=float(intercept), per_request_ms=float(slope))
    return ServiceModel(model.base_ms, model.per_request_ms, max(0.0, cycle_ms - model.compute_ms(MAX_BATCH)))


def merge(totals: dict[int, tuple[int, float]], more: dict[int, tuple[int, float]]) -> dict[int, tuple[int, float]]:
    return {b: (totals.get(b, (0, 0.0))[0] + n, totals.get(b, (0, 0.0))[1] + ns) for b, (n, ns) in more.items()}


def simulated(replica: ReplicaConfig, rate: float, seed: int) -> Observed:
    run, scrape = steady_state(replica, rate, SIMULATED_SECONDS, seed)
    counters = scrape.triton
    return Observed(
        rate=counters.success / SIMULATED_SECONDS,
        queue_ms=float(np.mean(run.queue_ms)),
        batch=counters.success / counters.executions,
        compute_ms=counters.compute_us / counters.success / 1000.0,
    )


def markdown(report: dict[str, Any], command: str) -> str:
    service = report["replica"]["service"]
    burst_seen = report["burst"]
    lines = [
        "# Simulator calibration on a real Triton",
        "",
        f"Command: `{command}`",
        f"Machine: {report['machine']}; date {report['date']}. Triton {report['triton_version']} (the host server of "
        "`hack/install-triton-host.sh`), the `sleeper` model (python backend, max_batch_size 8, dynamic batching, "
        f"max_queue_delay 100 us) with sleep_ms {report['sleep_ms']:g}; the load generator (gRPC async_infer, "
        "open-loop Poisson) shares the 2 cores with Triton.",
        "",
        "## Fitted replica model (benchmarks/results/calibration.json)",
        "",
        f"- batch compute time: {service['base_ms']:.2f} ms + {service['per_request_ms']:.3f} ms x batch size "
        "(weighted least squares over Triton's per-batch-size statistics: "
        + ", ".join(f"{b}: {n} x {ms:.2f} ms" for b, (n, ms) in report["batch_means"].items())
        + ")",
        f"- instance overhead per batch: {service['overhead_ms']:.2f} ms (saturated cycle "
        f"{burst_seen['cycle_ms']:.2f} ms minus a full batch's compute)",
        f"- Triton start to ready: {report['start_seconds']:.2f} s",
        f"- pending gauge: {burst_seen['requests']} requests sent at once, then read: pending {burst_seen['pending']:g}, "
        f"completed {burst_seen['completed']:g}, so {burst_seen['executing']:g} were neither: the batch executing. The "
        "gauge counts queued requests only.",
        f"- batches after a full one: 1 request, 10 more 10 ms later, then one at 60 ms and one at 80 ms ran in "
        f"{', '.join(f'{n:g}' for n in report['sealed'])} executions. 4 (in {report['sealed'].count(4)} of "
        f"{len(report['sealed'])} tries) means the 2 requests a full batch left behind were sealed with the next "
        "arrival into their own batch; a batcher that keeps filling the waiting batch until the instance frees runs "
        "3. The simulator follows the majority: it seals.",
        f"- counters: /metrics polled every 0.25 s under load moved at {report['moved']:.0%} of polls (at least "
        f"{min(p['moved'] for p in report['points']):.0%} at every point): updated at request completion, not on "
        "Triton's 2 s metrics interval (that interval is for GPU and CPU gauges).",
        "",
        "## Measured vs simulated, one replica",
        "",
        f"Each measured point is {report['seconds']:g} s of load; each simulated one {SIMULATED_SECONDS:g} s of the "
        "fitted model at the measured rate.",
        "",
        "| instances | offered req/s | served req/s | queue ms measured | queue ms simulated | error "
        "| batch measured | batch simulated | compute ms measured | compute ms simulated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for point in report["points"]:
        m, s = point["measured"], point["simulated"]
        error = (s["queue_ms"] - m["queue_ms"]) / m["queue_ms"]
        lines.append(
            f"| {point['instances']} | {point['offered']:.0f} | {m['rate']:.1f} | {m['queue_ms']:.1f} | "
            f"{s['queue_ms']:.1f} | {error:+.0%} | {m['batch']:.2f} | {s['batch']:.2f} | {m['compute_ms']:.1f} | "
            f"{s['compute_ms']:.1f} |"
        )
    lines += [
        "",
        "Where the model is off: with one instance above about 80 % of the full-batch peak the simulator under-states "
        "queue time (the 1-instance rows at 123 and 135 req/s offered). Triton's own request traces "
        "(`--trace-config level=TIMESTAMPS`, taken by hand on the same server and model at 100 and 125 req/s, not by "
        "this script) show why: under a standing backlog Triton seals each batch one batch further ahead, so a "
        "request waits up to two batches, which the simulator models only after a full batch (the rule above). "
        "Below that load, where a 50 ms target puts a replica, the model is within a few percent.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sleep-ms", type=float, default=50.0, help="the sleeper's time per batch")
    parser.add_argument("--seconds", type=float, default=25.0, help="load time per point")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        runs = [measure(args.sleep_ms, instances, args.seconds, Path(tmp)) for instances in sorted(SHARES)]
    totals: dict[int, tuple[int, float]] = {}
    for run in runs:
        totals = merge(totals, run["batches"])
    replica = ReplicaConfig(fit(totals, runs[0]["burst"]["cycle_ms"]), MAX_BATCH, QUEUE_DELAY_MS, instances=1)
    points: list[dict[str, Any]] = []
    for index, run in enumerate(runs):
        for point in run["points"]:
            model = ReplicaConfig(replica.service, MAX_BATCH, QUEUE_DELAY_MS, point["instances"])
            sim = simulated(model, point["measured"].rate, seed=index * 10 + len(points))
            points.append({**point, "measured": asdict(point["measured"]), "simulated": asdict(sim)})
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "triton_version": runs[0]["version"],
        "sleep_ms": args.sleep_ms,
        "seconds": args.seconds,
        "replica": replica.as_json(),
        "start_seconds": statistics.mean(run["start_seconds"] for run in runs),
        "burst": runs[0]["burst"],
        "sealed": runs[0]["sealed"],
        "moved": statistics.mean(p["moved"] for p in points),
        "batch_means": {b: (n, ns / n / 1e6) for b, (n, ns) in sorted(totals.items())},
        "points": points,
    }
    command = "python -m benchmarks.autoscaling.calibrate " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "calibration.json").write_text(json.dumps({**report, "command": command.strip()}, indent=2) + "\n")
    text = markdown(report, command.strip())
    (RESULTS / "calibration.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
