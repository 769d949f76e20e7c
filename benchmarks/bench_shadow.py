"""The shadow challenger's cost to the champion's clients, side by side in one run.

The default run's two best models (``models/<variant>``) are registered as versions 1 (``@champion``) and 2
(``@challenger``) of a model in a throw-away SQLite MLflow store. Two ``variantlab serve-model`` processes serve
``@champion``: one with ``--shadow-share 0`` (no shadow), one with ``--shadow-share 1`` (every request is also
answered by the challenger, off the request path). The client (aiohttp, one text per request) measures them in
alternating blocks at concurrency 1 and 8, so a machine whose speed drifts moves both alike; between blocks the
shadow's queue is left to drain, so one server's leftover work never lands on the other's block.

Target: the champion's p50 with the shadow on rises by at most 5% at concurrency 1 and 8. The shadow runs on idle
capacity only, so under those closed loops (a new request the moment the last is answered) it mostly sheds its
work; a third phase, one client pausing 30 ms between requests, shows how much it answers when the server has
idle time, and what that costs. Also recorded: the rows the shadow answered and dropped, the disagreement rate,
and a switch of @champion to the challenger under load with the shadow loaded (no failed request).

    python -m benchmarks.bench_shadow          # writes reports/bench/shadow.json (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_serve import NAME, ROOT, Server, load, percentile, register, switch_under_load


def metric(url: str, name: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return float(next((line.split()[1] for line in text.splitlines() if line.startswith(name + " ")), "0"))


def settle(url: str, limit_s: float = 60) -> None:
    """Wait until the shadow stopped answering (its queue drained)."""
    last, deadline = -1.0, time.monotonic() + limit_s
    while time.monotonic() < deadline:
        now = metric(url, "variantlab_shadow_predictions_total") + metric(url, "variantlab_shadow_dropped_total")
        if now == last:
            return
        last = now
        time.sleep(0.5)


def blocks(servers: dict[str, Server], texts: list[str], concurrency: int, rounds: int, per: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {label: [] for label in servers}
    failures = dict.fromkeys(servers, 0)
    during = 0.0  # rows the shadow answered while the block's load ran (the rest it answered once it was over)
    for block in range(rounds):
        order = list(servers) if block % 2 == 0 else list(reversed(servers))
        chunk = [texts[(block * per + i) % len(texts)] for i in range(per)]
        for label in order:
            before = metric(servers[label].url, "variantlab_shadow_predictions_total")
            got, _, failed, _ = asyncio.run(load(servers[label].url, chunk, concurrency, per, 120))
            during += metric(servers[label].url, "variantlab_shadow_predictions_total") - before
            latencies[label].extend(got)
            failures[label] += failed
            settle(servers[label].url)
    out: dict[str, Any] = {
        label: {
            "requests": len(values),
            "failed": failures[label],
            "p50_ms": round(percentile(values, 50) * 1000, 2),
            "p99_ms": round(percentile(values, 99) * 1000, 2),
        }
        for label, values in latencies.items()
    }
    out["shadow_rows_answered_during_load"] = during
    return out


async def paced(url: str, texts: list[str], requests: int, think_s: float) -> list[float]:
    """One client that waits ``think_s`` between requests: traffic that leaves the server idle time."""
    import aiohttp

    latencies = []
    async with aiohttp.ClientSession(base_url=url) as client:
        for i in range(requests):
            t0 = time.perf_counter()
            async with client.post("/invocations", json={"inputs": {"text": [texts[i % len(texts)]]}}) as response:
                await response.read()
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(think_s)
    return latencies


def paced_blocks(servers: dict[str, Server], texts: list[str], rounds: int, per: int, think_s: float) -> dict[str, Any]:
    """Paced traffic, alternating blocks: the latency either way, and the share the shadow answered."""
    latencies: dict[str, list[float]] = {label: [] for label in servers}
    on = servers["shadow_on"].url
    before = metric(on, "variantlab_shadow_predictions_total")
    sent = 0
    for block in range(rounds):
        order = list(servers) if block % 2 == 0 else list(reversed(servers))
        chunk = [texts[(block * per + i) % len(texts)] for i in range(per)]
        for label in order:
            latencies[label].extend(asyncio.run(paced(servers[label].url, chunk, per, think_s)))
            sent += per if label == "shadow_on" else 0
            settle(servers[label].url)
    out: dict[str, Any] = {
        label: {
            "requests": len(v),
            "p50_ms": round(percentile(v, 50) * 1000, 2),
            "p99_ms": round(percentile(v, 99) * 1000, 2),
        }
        for label, v in latencies.items()
    }
    out["think_ms"] = think_s * 1000
    out["shadowed_share"] = round((metric(on, "variantlab_shadow_predictions_total") - before) / sent, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs=2, help="champion and challenger models/ variants (default: top 2)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks per concurrency")
    parser.add_argument("--per-block", type=int, default=60, help="requests per block")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/shadow.json")
    parser.add_argument(
        "--share", type=float, default=1.0, help="the shadow server's share (0: an A/A run that measures the noise)"
    )
    args = parser.parse_args()
    import pandas as pd

    board = ROOT / "reports/leaderboard.csv"
    variants = args.variants or pd.read_csv(board)["variant"].head(2).tolist()
    texts = pd.read_parquet(ROOT / "data/prepared/test.parquet")["text"].sample(400, random_state=0).tolist()
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        store = Path(tmp)
        register(store, variants)
        import mlflow

        mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}").set_registered_model_alias(
            NAME, "challenger", "2"
        )
        servers = {
            "shadow_off": Server(store, "--poll-s", "0.5", "--shadow-share", "0"),
            "shadow_on": Server(store, "--poll-s", "0.5", "--shadow-share", str(args.share)),
        }
        try:
            for label, server in servers.items():
                print(f"{label} ready in {server.wait():.1f} s", flush=True)
                asyncio.run(load(server.url, texts, 4, 40, 30))  # warm-up
                settle(server.url)
            results: dict[str, Any] = {}
            for concurrency in (1, 8):
                results[f"c{concurrency}"] = blocks(servers, texts, concurrency, args.rounds, args.per_block)
                print(f"  c{concurrency}: {results[f'c{concurrency}']}", flush=True)
            results["paced"] = paced_blocks(servers, texts, args.rounds, args.per_block // 2, 0.03)
            print(f"  paced (30 ms between requests): {results['paced']}", flush=True)
            on = servers["shadow_on"].url
            shadow = {
                "answered_rows": metric(on, "variantlab_shadow_predictions_total"),
                "dropped_rows": metric(on, "variantlab_shadow_dropped_total"),
                "disagreement_rate": metric(on, "variantlab_shadow_disagreement_rate"),
                "errors": metric(on, "variantlab_shadow_errors_total"),
            }
            switch = switch_under_load(on, texts, store, 15.0)
            print(f"  switch with the shadow loaded: {switch}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    ratios = {
        key: round(level["shadow_on"]["p50_ms"] / level["shadow_off"]["p50_ms"], 3) for key, level in results.items()
    }
    ratios["paced_shadowed_share"] = results["paced"]["shadowed_share"]
    report = {
        "benchmark": "shadow",
        "command": "python -m benchmarks.bench_shadow",
        "variants": {"champion": variants[0], "challenger": variants[1]},
        **results,
        "shadow": shadow,
        "switch_with_shadow": switch,
        "ratios": {
            (key if key.endswith("share") else f"{key}_p50_shadow_on_over_off"): value for key, value in ratios.items()
        },
        "targets": {
            "c1 p50 rises <= 5% with the shadow at share 1.0": ratios["c1"] <= 1.05,
            "c8 p50 rises <= 5% with the shadow at share 1.0": ratios["c8"] <= 1.05,
            "no failed request while the champion switches": switch["failed"] == 0 and switch["switched"],
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"ratios": report["ratios"], "targets": report["targets"], "shadow": shadow}, indent=2))


if __name__ == "__main__":
    main()
