"""The model server under load, with a real HTTP client on loopback, side by side in one run.

The models are the default run's own (``models/<variant>``, the two best of ``reports/leaderboard.csv``),
registered as versions 1 and 2 of a model in a throw-away SQLite MLflow store. The server is
``variantlab serve-model`` in its own process; the client is ``aiohttp`` with ``c`` requests in flight,
one text per request (real test sentences), bounded by a request count and a time limit each.

1. **Bare predict**: ``pyfunc.predict`` of one row in this process, p50 and p99.
2. **Micro-batched server** (the defaults): p50, p99 and requests/s at concurrency 1, 8 and 32.
3. **One at a time** (``--max-batch 1``): the same at concurrency 1 and 32.
4. **Switch under load**: concurrency 8; ``@champion`` moves from version 1 to 2 part-way; failed requests,
   the versions answered, and the moment the answers changed.

Targets: c32 batched >= 3x one-at-a-time c32 and c1 requests/s; c1 p50 <= 1.2x bare predict; no failed request
during the switch. Beside them, the model's own batching gain (rows/s of one 32-row ``predict`` over 32 one-row
calls, in this process): micro-batching cannot turn more than that into throughput.

    python -m benchmarks.bench_serve            # writes reports/bench/serve.json (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench-serve"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(latencies: list[float], seconds: float, failures: int) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "failed": failures,
        "seconds": round(seconds, 2),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "requests_per_s": round(len(latencies) / seconds, 1),
    }


def register(store: Path, variants: list[str]) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    for variant in variants:
        source = ROOT / "models" / variant
        if not (source / "MLmodel").is_file():
            raise SystemExit(f"{source} is not a model: run the default pipeline first (make run)")
        client.create_model_version(NAME, source=str(source), description=f"models/{variant} of the default run")
    client.set_registered_model_alias(NAME, "champion", "1")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, store: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
            "VARIANTLAB_PREDICTION_LOG": f"sqlite:///{store / f'predictions-{self.port}.db'}",
        }
        argv = ["serve-model", f"models:/{NAME}@champion", "--port", str(self.port), *extra]
        self.log = (store / f"serve-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "variantlab.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 300) -> float:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"the server did not become ready in {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def load(
    url: str, texts: list[str], concurrency: int, requests: int, limit_s: float, on_tick: Any = None
) -> tuple[list[float], float, int, list[tuple[float, float, str]]]:
    """``concurrency`` workers sending one text per request until ``requests`` are done or ``limit_s`` passed.

    The client is aiohttp (C-accelerated HTTP parsing): it shares this machine's two cores with the server, so
    a slow client would understate the server."""
    import aiohttp

    latencies: list[float] = []
    answered: list[tuple[float, float, str]] = []  # (start, end, model version), seconds from the start
    failures = 0
    sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as client:
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal sent, failures
            while sent < requests and time.perf_counter() - started < limit_s:
                text = texts[sent % len(texts)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    async with client.post("/invocations", json={"inputs": {"text": [text]}}) as response:
                        body = await response.json() if response.status == 200 else None
                except aiohttp.ClientError:
                    body = None
                t1 = time.perf_counter()
                if body is None:
                    failures += 1
                    continue
                latencies.append(t1 - t0)
                answered.append((t0 - started, t1 - started, body["model_version"]))

        async def ticker() -> None:
            while on_tick is not None and await on_tick(time.perf_counter() - started):
                await asyncio.sleep(0.1)

        await asyncio.gather(*(worker() for _ in range(concurrency)), ticker())
        seconds = time.perf_counter() - started
    return latencies, seconds, failures, answered


def bare_predict(store: Path, texts: list[str], n: int) -> tuple[dict[str, Any], Any]:
    import pandas as pd

    from variantlab.io.models import load_pyfunc

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    model = load_pyfunc(f"models:/{NAME}/1")
    for text in texts[:20]:  # warm-up, as the server's first requests are
        model.predict(pd.DataFrame({"text": [text]}))
    latencies = []
    for i in range(n):
        t0 = time.perf_counter()
        model.predict(pd.DataFrame({"text": [texts[i % len(texts)]]}))
        latencies.append(time.perf_counter() - t0)
    p50 = percentile(latencies, 50) * 1000
    batched = []  # the model's own batching gain: what micro-batching can at best turn into throughput
    for i in range(20):
        chunk = [texts[(i * 32 + j) % len(texts)] for j in range(32)]
        t0 = time.perf_counter()
        model.predict(pd.DataFrame({"text": chunk}))
        batched.append(time.perf_counter() - t0)
    b32 = percentile(batched, 50) * 1000
    return {
        "calls": n,
        "p50_ms": round(p50, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "batch32_p50_ms": round(b32, 2),
        "batch32_rows_per_s_over_batch1": round(32 * p50 / b32, 2),
    }, model


def interleaved_c1(url: str, model: Any, texts: list[str], blocks: int = 6, per_block: int = 40) -> dict[str, Any]:
    """Concurrency 1 against bare ``predict`` in alternating blocks on the same texts, so a machine whose speed
    drifts during the run (these do) moves both sides alike."""
    import pandas as pd

    bare: list[float] = []
    served: list[float] = []
    for block in range(blocks):
        chunk = [texts[(block * per_block + i) % len(texts)] for i in range(per_block)]
        for text in chunk:
            t0 = time.perf_counter()
            model.predict(pd.DataFrame({"text": [text]}))
            bare.append(time.perf_counter() - t0)
        time.sleep(0.3)  # let this process's idle compute threads stop spinning before the server's turn
        latencies, _, _, _ = asyncio.run(load(url, chunk, 1, per_block, 60))
        served.extend(latencies)
        time.sleep(0.3)
    b50, s50 = percentile(bare, 50) * 1000, percentile(served, 50) * 1000
    return {"blocks": blocks, "per_block": per_block, "bare_p50_ms": round(b50, 2), "served_p50_ms": round(s50, 2)}


def run_levels(url: str, texts: list[str], levels: dict[int, int], limit_s: float) -> dict[str, Any]:
    out = {}
    asyncio.run(load(url, texts, 4, 40, 30))  # warm-up: threads, connections, the first batches
    for concurrency, requests in levels.items():
        latencies, seconds, failures, _ = asyncio.run(load(url, texts, concurrency, requests, limit_s))
        out[f"c{concurrency}"] = summary(latencies, seconds, failures)
        print(f"  c{concurrency}: {out[f'c{concurrency}']}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs=2, help="the two models/ variants (default: the leaderboard's top 2)")
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level (c1: a third)")
    parser.add_argument("--limit-s", type=float, default=25.0, help="time limit per level")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/serve.json")
    args = parser.parse_args()
    import pandas as pd

    variants = args.variants or pd.read_csv(ROOT / "reports/leaderboard.csv")["variant"].head(2).tolist()
    texts = pd.read_parquet(ROOT / "data/prepared/test.parquet")["text"].sample(400, random_state=0).tolist()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        store = Path(tmp)
        register(store, variants)
        print(f"bare pyfunc.predict of models/{variants[0]}", flush=True)
        bare, model = bare_predict(store, texts, 200)
        print(f"  {bare}", flush=True)
        levels = {1: args.requests // 3, 8: args.requests, 32: args.requests}
        results: dict[str, Any] = {}
        for label, extra, wanted in (
            ("batched", (), levels),
            ("one_at_a_time", ("--max-batch", "1"), {1: levels[1], 32: levels[32]}),
        ):
            server = Server(store, "--poll-s", "0.5", *extra)
            try:
                ready = server.wait()
                print(f"{label} server ready in {ready:.1f} s", flush=True)
                results[label] = run_levels(server.url, texts, wanted, args.limit_s)
                if label == "batched":
                    results["c1_interleaved"] = interleaved_c1(server.url, model, texts)
                    print(f"  c1 interleaved with bare predict: {results['c1_interleaved']}", flush=True)
                    results["switch"] = switch_under_load(server.url, texts, store, args.limit_s)
                    print(f"  switch: {results['switch']}", flush=True)
            finally:
                server.stop()
    b, one = results["batched"], results["one_at_a_time"]
    speedup = b["c32"]["requests_per_s"] / max(one["c32"]["requests_per_s"], one["c1"]["requests_per_s"])
    overhead = results["c1_interleaved"]["served_p50_ms"] / results["c1_interleaved"]["bare_p50_ms"]
    report = {
        "benchmark": "serve",
        "command": "python -m benchmarks.bench_serve",
        "variants": {"version_1": variants[0], "version_2": variants[1]},
        "bare_predict": bare,
        **results,
        "ratios": {
            "c32_batched_over_one_at_a_time": round(speedup, 2),
            "c1_p50_over_bare_predict": round(overhead, 3),  # interleaved blocks
            "model_batch32_over_batch1_rows_per_s": bare["batch32_rows_per_s_over_batch1"],
        },
        "targets": {
            "c32 batched >= 3x one at a time": speedup >= 3.0,
            "c1 p50 <= 1.2x bare predict": overhead <= 1.2,
            "no failed request during the switch": results["switch"]["failed"] == 0
            and results["switch"]["switched"]
            and results["switch"]["version_1_answers_to_requests_sent_after_version_2_answered"] == 0,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"ratios": report["ratios"], "targets": report["targets"]}, indent=2))


def switch_under_load(url: str, texts: list[str], store: Path, limit_s: float) -> dict[str, Any]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    moved: dict[str, float] = {}

    async def tick(elapsed: float) -> bool:
        if "at" not in moved and elapsed > 3.0:
            await asyncio.to_thread(client.set_registered_model_alias, NAME, "champion", "2")
            moved["at"] = elapsed
        return elapsed < limit_s

    latencies, seconds, failures, answered = asyncio.run(load(url, texts, 8, 100_000, limit_s, tick))
    first_v2 = min((end for _, end, v in answered if v == "2"), default=None)
    late_v1 = sum(1 for start, _, v in answered if v == "1" and first_v2 is not None and start > first_v2)
    return {
        **summary(latencies, seconds, failures),
        "alias_moved_at_s": round(moved.get("at", -1), 2),
        "first_version_2_answer_at_s": None if first_v2 is None else round(first_v2, 2),
        "versions": {v: sum(1 for _, _, x in answered if x == v) for v in ("1", "2")},
        "version_1_answers_to_requests_sent_after_version_2_answered": late_v1,
        "switched": first_v2 is not None,
        "p99_ms_during_switch": round(percentile(latencies, 99) * 1000, 2),
        "mean_ms": round(statistics.mean(latencies) * 1000, 2),
    }


if __name__ == "__main__":
    main()
