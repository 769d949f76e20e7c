"""Prometheus metrics of the model server (``GET /metrics``), on a registry of its own per app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from variantlab.serving.slot import Loaded

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "variantlab_serve_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.errors = Counter(
            "variantlab_serve_request_errors", "Requests answered 4xx or 5xx", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "variantlab_serve_request_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.predictions = Counter("variantlab_serve_predictions", "Rows predicted", registry=r)
        self.batch_rows = Histogram(
            "variantlab_serve_batch_rows", "Rows per model call (micro-batching)", buckets=BATCH_BUCKETS, registry=r
        )
        self.feedbacks = Counter("variantlab_serve_feedback", "Feedback by outcome", ["outcome"], registry=r)
        self.model = Gauge(
            "variantlab_serve_model_info",
            "The served model: 1 for its name and version",
            ["name", "version"],
            registry=r,
        )
        self.switches = Counter("variantlab_serve_model_switches", "Model versions switched to", registry=r)
        self.load_failures = Counter(
            "variantlab_serve_model_load_failures",
            "Versions that failed to load (the old one served on)",
            registry=r,
        )
        self.load_seconds = Gauge("variantlab_serve_model_load_seconds", "Load time of the served version", registry=r)
        self.shadow_rows = Counter("variantlab_shadow_predictions", "Rows the shadow challenger answered", registry=r)
        self.shadow_disagreements = Counter(
            "variantlab_shadow_disagreements",
            "Shadowed rows where challenger and champion answer differently",
            registry=r,
        )
        self.shadow_rate = Gauge(
            "variantlab_shadow_disagreement_rate", "Share of shadowed rows where the two models disagree", registry=r
        )
        self.shadow_dropped = Counter(
            "variantlab_shadow_dropped", "Rows the shadow dropped because it fell behind", registry=r
        )
        self.shadow_errors = Counter("variantlab_shadow_errors", "Shadow model calls that failed", registry=r)
        self.shadow_refused = Counter(
            "variantlab_shadow_refused",
            "Challenger versions refused at load (another task, or a load failure)",
            registry=r,
        )
        self.auth_failures = Counter(
            "variantlab_serve_auth_failures",
            "Requests refused for their token (401 missing, forged, revoked or misplaced; 403 wrong scope)",
            ["endpoint", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "variantlab_serve_rate_limited",
            "Requests refused with 429 (per-source rate limit)",
            ["endpoint"],
            registry=r,
        )
        self._served: tuple[str, str] | None = None
        self._shadow_counts = [0, 0]

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def predicted(self, rows: int) -> None:
        self.predictions.inc(rows)

    def batch(self, rows: int) -> None:
        self.batch_rows.observe(rows)

    def feedback(self, outcome: str) -> None:
        self.feedbacks.labels(outcome).inc()

    def served(self, loaded: Loaded) -> None:
        if self._served is not None:
            self.model.remove(*self._served)
            self.switches.inc()
        self._served = (loaded.name, loaded.version)
        self.model.labels(*self._served).set(1)
        self.load_seconds.set(loaded.load_seconds)

    def shadowed(self, rows: int, disagreements: int) -> None:
        self.shadow_rows.inc(rows)
        self.shadow_disagreements.inc(disagreements)
        self._shadow_counts[0] += rows
        self._shadow_counts[1] += disagreements
        self.shadow_rate.set(self._shadow_counts[1] / self._shadow_counts[0])

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
