"""What tokens and rate limits cost, side by side in one run.

The default run's TF-IDF model (``models/tfidf-logreg``: the cheapest, so the check's cost is not hidden under
the model's) is registered in a throw-away SQLite store and served in this process (uvicorn in a thread) twice:
without tokens, and with tokens required on every endpoint. One aiohttp client, one text per request, alternating
blocks at concurrency 1. Then a service limited to 50 predictions a second per token is hammered by 32 concurrent
clients sharing one token for 10 s: the accepted rate after the initial burst against the limit.

Targets: a token check adds at most 0.2 ms to p50 at concurrency 1; the limiter holds its rate within 5%.

    python -m benchmarks.bench_auth            # writes reports/bench/auth.json (about a minute)
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

from benchmarks.bench_serve import NAME, ROOT, percentile, register


async def c1(url: str, texts: list[str], n: int, headers: dict[str, str]) -> list[float]:
    import aiohttp

    out = []
    async with aiohttp.ClientSession(base_url=url, headers=headers) as client:
        for i in range(n):
            t0 = time.perf_counter()
            async with client.post("/invocations", json={"inputs": {"text": [texts[i % len(texts)]]}}) as response:
                await response.read()
                assert response.status == 200, response.status
            out.append(time.perf_counter() - t0)
    return out


async def hammer(url: str, headers: dict[str, str], clients: int, seconds: float) -> tuple[list[float], int]:
    import aiohttp

    accepted: list[float] = []
    refused = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession(base_url=url, headers=headers) as client:

        async def one() -> None:
            nonlocal refused
            while time.perf_counter() - started < seconds:
                async with client.post("/invocations", json={"inputs": {"text": ["a day"]}}) as response:
                    await response.read()
                    if response.status == 200:
                        accepted.append(time.perf_counter() - started)
                    else:
                        refused += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return accepted, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-block", type=int, default=150)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/auth.json")
    args = parser.parse_args()
    import pandas as pd

    from variantlab.config import ServeConfig
    from variantlab.serving import auth
    from variantlab.serving.app import ServeSettings, create_app, running

    texts = pd.read_parquet(ROOT / "data/prepared/test.parquet")["text"].sample(400, random_state=0).tolist()
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        store = Path(tmp)
        register(store, ["tfidf-logreg"])
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
        tokens = store / "tokens.json"
        _, token = auth.create(tokens, "bench", ["predict"], days=30)  # with an expiry: the check reads it
        uri = f"models:/{NAME}@champion"
        closed = ServeConfig(open_predict_on_loopback=False, poll_s=60)
        apps = {
            "no_tokens": create_app(ServeSettings(uri, f"sqlite:///{store / 'a.db'}", closed)),
            "tokens": create_app(ServeSettings(uri, f"sqlite:///{store / 'b.db'}", closed, tokens=tokens)),
        }
        headers = {"no_tokens": {}, "tokens": {"Authorization": f"Bearer {token}"}}
        latencies: dict[str, list[float]] = {k: [] for k in apps}
        with running(apps["no_tokens"]) as url_a, running(apps["tokens"]) as url_b:
            urls = {"no_tokens": url_a, "tokens": url_b}
            for label in urls:
                asyncio.run(c1(urls[label], texts, 50, headers[label]))  # warm-up
            for block in range(args.rounds):
                for label in list(urls) if block % 2 == 0 else list(reversed(urls)):
                    latencies[label] += asyncio.run(c1(urls[label], texts, args.per_block, headers[label]))
        limited = create_app(
            ServeSettings(
                uri, f"sqlite:///{store / 'c.db'}", ServeConfig(predict_rate=args.rate, poll_s=60), tokens=tokens
            )
        )
        with running(limited) as url:
            seconds = 10.0
            accepted, refused = asyncio.run(hammer(url, headers["tokens"], 32, seconds))
    burst = max(1.0, args.rate)
    after_burst = [t for t in accepted if t > 1.0]
    measured = len(after_burst) / (seconds - 1.0)
    p50 = {k: percentile(v, 50) * 1000 for k, v in latencies.items()}
    added = p50["tokens"] - p50["no_tokens"]
    report = {
        "benchmark": "auth",
        "command": "python -m benchmarks.bench_auth",
        "c1": {
            k: {"requests": len(v), "p50_ms": round(p50[k], 3), "p99_ms": round(percentile(v, 99) * 1000, 3)}
            for k, v in latencies.items()
        },
        "token_check_added_p50_ms": round(added, 3),
        "rate_limit": {
            "limit_per_s": args.rate,
            "burst": burst,
            "clients": 32,
            "seconds": seconds,
            "accepted": len(accepted),
            "refused_429": refused,
            "accepted_per_s_after_the_first_second": round(measured, 2),
            "ratio_to_limit": round(measured / args.rate, 4),
        },
        "targets": {
            "a token check adds at most 0.2 ms to p50 at c1": added <= 0.2,
            "the limiter holds its rate within 5% under 32 clients": abs(measured / args.rate - 1) <= 0.05,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("c1", "token_check_added_p50_ms", "rate_limit", "targets")}, indent=2))


if __name__ == "__main__":
    main()
