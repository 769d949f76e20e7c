"""The model server over real HTTP on loopback: MLflow's payloads, the prediction log, feedback, metrics, micro-
batching, the hot switch of @champion under concurrent requests, and every bad request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.serving.conftest import CLASSIFIER, GENERATOR, REGRESSOR, Registry
from variantlab.config import ServeConfig
from variantlab.serving.app import ServeSettings, create_app, running


def settings(registry: Registry, tmp_path: Path, name: str = CLASSIFIER, **overrides: object) -> ServeSettings:
    values: dict[str, object] = {
        "model_uri": f"models:/{name}@champion",
        "log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        "poll_s": 0.2,
        "log_flush_ms": 20.0,
    }
    values.update(overrides)
    uri, log = str(values.pop("model_uri")), str(values.pop("log_url"))
    return ServeSettings(uri, log, ServeConfig.model_validate(values))


@contextmanager
def server(registry: Registry, tmp_path: Path, **overrides: object) -> Iterator[httpx.Client]:
    app = create_app(settings(registry, tmp_path, **overrides))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def rows(tmp_path: Path, table: str) -> list[dict[str, object]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")
    with engine.connect() as connection:
        found = [dict(r) for r in connection.execute(sa.text(f"SELECT * FROM {table}")).mappings()]
    engine.dispose()
    return found


def direct(registry: Registry, version: str, texts: list[str], name: str = CLASSIFIER) -> list[object]:
    from variantlab.io.models import load_pyfunc

    out = load_pyfunc(f"models:/{name}/{version}").predict(pd.DataFrame({"text": texts}))
    return [v.item() if hasattr(v, "item") else v for v in out]


def predict(client: httpx.Client, texts: list[str], **extra: object) -> dict[str, object]:
    response = client.post("/invocations", json={"dataframe_records": [{"text": t} for t in texts], **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_mlflow_payloads_are_answered_as_mlflow_answers_them(registry: Registry, tmp_path: Path) -> None:
    from mlflow.models import convert_input_example_to_serving_input

    texts = registry.texts[:5]
    expected = direct(registry, "1", texts)
    frame = pd.DataFrame({"text": texts})
    payloads = {
        "mlflow's own serving input": json.loads(str(convert_input_example_to_serving_input(frame))),
        "dataframe_split": {"dataframe_split": frame.to_dict(orient="split", index=False)},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "instances": {"instances": frame.to_dict(orient="records")},
        "inputs": {"inputs": {"text": texts}},
    }
    with server(registry, tmp_path) as client:
        assert client.get("/ping").status_code == 200 and client.get("/health").status_code == 200
        import mlflow

        assert client.get("/version").text == mlflow.__version__
        seen: set[str] = set()
        for name, payload in payloads.items():
            response = client.post("/invocations", json=payload)
            assert response.status_code == 200, (name, response.text)
            body = response.json()
            assert body["predictions"] == expected, name
            assert body["model_version"] == "1" and response.headers["X-Model-Version"] == "1"
            assert body["model_name"] == CLASSIFIER
            assert len(body["prediction_ids"]) == len(texts) and not seen & set(body["prediction_ids"])
            seen |= set(body["prediction_ids"])
        csv = client.post("/invocations", content=frame.to_csv(index=False), headers={"Content-Type": "text/csv"})
        assert csv.status_code == 200 and csv.json()["predictions"] == expected
        proba = predict(client, texts[:2], params={"output": "proba"})["predictions"]
        assert all(set(p) == {"cold", "hot", "mild"} and abs(sum(p.values()) - 1) < 1e-6 for p in proba)  # type: ignore[union-attr]


def test_every_prediction_is_logged_with_version_digest_text_and_latency(registry: Registry, tmp_path: Path) -> None:
    import hashlib

    texts = registry.texts[:3]
    with server(registry, tmp_path) as client:
        body = predict(client, texts)
    logged = {r["id"]: r for r in rows(tmp_path, "predictions")}
    assert set(logged) == set(body["prediction_ids"])  # type: ignore[arg-type]
    for pid, text, out in zip(body["prediction_ids"], texts, body["predictions"], strict=True):  # type: ignore[arg-type]
        row = logged[pid]
        assert row["model_version"] == "1" and row["model_name"] == CLASSIFIER
        assert row["text"] == text and row["input_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert json.loads(str(row["output"])) == out and float(row["latency_ms"]) >= float(row["model_ms"]) > 0  # type: ignore[arg-type]


def test_no_store_text_keeps_only_the_digest(registry: Registry, tmp_path: Path) -> None:
    with server(registry, tmp_path, store_text=False) as client:
        predict(client, registry.texts[:2])
    logged = rows(tmp_path, "predictions")
    assert len(logged) == 2 and all(r["text"] is None and len(str(r["input_sha256"])) == 64 for r in logged)


def test_feedback_is_checked_by_the_task_and_recorded_once(registry: Registry, tmp_path: Path) -> None:
    with server(registry, tmp_path) as client:
        ids = predict(client, registry.texts[:3])["prediction_ids"]
        ok = client.post("/feedback", json={"prediction_id": ids[0], "label": "Hot", "domain": "forum"})  # type: ignore[index]
        assert ok.status_code == 201 and ok.json()["label"] == "hot", ok.text  # the task's own spelling
        refused = {
            "duplicate": ({"prediction_id": ids[0], "label": "cold"}, 409, "already has feedback"),  # type: ignore[index]
            "unknown id": ({"prediction_id": "f" * 32, "label": "cold"}, 404, "no prediction with id"),
            "label outside the task": ({"prediction_id": ids[1], "label": "positive"}, 422, "cold, hot, mild"),  # type: ignore[index]
            "a number for a label task": ({"prediction_id": ids[1], "value": 2.0}, 400, "send 'label'"),  # type: ignore[index]
            "no label": ({"prediction_id": ids[1]}, 400, "'label' must be"),  # type: ignore[index]
            "extra key": ({"prediction_id": ids[1], "label": "hot", "x": 1}, 400, "unexpected key 'x'"),  # type: ignore[index]
            "no id": ({"label": "hot"}, 400, "prediction_id"),
        }
        for case, (payload, status, message) in refused.items():
            response = client.post("/feedback", json=payload)
            assert response.status_code == status, (case, response.text)
            assert message in response.json()["message"], (case, response.text)
        bad_json = client.post("/feedback", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400 and "malformed JSON" in bad_json.json()["message"]
    feedback = rows(tmp_path, "feedback")
    assert [(f["prediction_id"], f["label"], f["domain"]) for f in feedback] == [(ids[0], "hot", "forum")]  # type: ignore[index]


def test_regression_feedback_takes_a_number_within_the_tasks_range(registry: Registry, tmp_path: Path) -> None:
    with server(registry, tmp_path, name=REGRESSOR) as client:
        body = predict(client, registry.texts[:3])
        assert all(isinstance(p, float) for p in body["predictions"])  # type: ignore[union-attr]
        ids = body["prediction_ids"]
        assert client.post("/feedback", json={"prediction_id": ids[0], "value": 5.5}).status_code == 422  # type: ignore[index]
        assert client.post("/feedback", json={"prediction_id": ids[0], "label": "hot"}).status_code == 400  # type: ignore[index]
        assert client.post("/feedback", json={"prediction_id": ids[0], "value": "2"}).status_code == 400  # type: ignore[index]
        assert client.post("/feedback", json={"prediction_id": ids[0], "value": -1.5}).status_code == 201  # type: ignore[index]
    assert [(f["value"], f["label"]) for f in rows(tmp_path, "feedback")] == [(-1.5, None)]


def test_a_generation_model_answers_text_and_takes_the_corrected_answer(registry: Registry, tmp_path: Path) -> None:
    with server(registry, tmp_path, name=GENERATOR) as client:
        body = predict(client, registry.texts[:3])
        assert body["predictions"] == registry.texts[:3]  # the copy baseline writes its input
        ids = body["prediction_ids"]
        cases = [
            ({"answer": 3}, 400, "'answer' must be the corrected answer"),
            ({"answer": "  "}, 400, "'answer' must be the corrected answer"),
            ({"label": "hot"}, 400, "this model writes text"),
            ({"answer": "x" * 41}, 422, "has 41 characters; the task allows 40"),
        ]
        for extra, status, message in cases:
            response = client.post("/feedback", json={"prediction_id": ids[0], **extra})  # type: ignore[index]
            assert response.status_code == status and message in response.text, (extra, response.text)
        accepted = client.post("/feedback", json={"prediction_id": ids[1], "answer": " the soup, warm "})  # type: ignore[index]
        assert accepted.status_code == 201, accepted.text
    assert [(f["label"], f["value"]) for f in rows(tmp_path, "feedback")] == [("the soup, warm", None)]


def test_bad_requests_get_one_clear_4xx_and_record_nothing(registry: Registry, tmp_path: Path) -> None:
    json_type = {"Content-Type": "application/json"}
    cases = {
        "malformed JSON": (b'{"dataframe_records": [', json_type, 400, "malformed JSON"),
        "not an object": (b"[1, 2]", json_type, 400, "must be an object"),
        "no format key": (b'{"rows": []}', json_type, 400, "unexpected key 'rows'"),
        "missing column": (b'{"dataframe_records": [{"body": "hi"}]}', json_type, 400, "missing column 'text'"),
        "extra column": (
            b'{"dataframe_records": [{"text": "hi", "lang": "en"}]}',
            json_type,
            400,
            "unexpected column 'lang'",
        ),
        "empty text": (b'{"dataframe_records": [{"text": "ok"}, {"text": "  "}]}', json_type, 400, "row 2: 'text'"),
        "null text": (b'{"dataframe_records": [{"text": null}]}', json_type, 400, "'text' is missing"),
        "number as text": (b'{"inputs": {"text": [3]}}', json_type, 400, "must be a string"),
        "no rows": (b'{"dataframe_records": []}', json_type, 400, ""),
        "1 MB text": (
            json.dumps({"dataframe_records": [{"text": "a" * 1_000_000}]}).encode(),
            json_type,
            413,
            "1000000 characters",
        ),
        "wrong content type": (b"text=hi", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
        "not UTF-8": (b'{"inputs": {"text": ["\xff"]}}', json_type, 400, "not UTF-8"),
    }
    with server(registry, tmp_path, max_body_bytes=3_000_000) as client:
        for case, (body, headers, status, message) in cases.items():
            response = client.post("/invocations", content=body, headers=headers)
            assert response.status_code == status, (case, response.text)
            error = response.json()
            assert set(error) == {"error_code", "message"} and message in error["message"], (case, error)
            assert "Traceback" not in error["message"] and "\n" not in error["message"], case
        huge = client.post("/invocations", content=b"x" * 3_100_000, headers=json_type)
        assert huge.status_code == 413 and "limit" in huge.json()["message"]
        assert client.get("/ping").status_code == 200  # the service is still up
    assert rows(tmp_path, "predictions") == []


def test_metrics_count_requests_errors_latency_and_the_served_version(registry: Registry, tmp_path: Path) -> None:
    with server(registry, tmp_path) as client:
        predict(client, registry.texts[:2])
        client.post("/invocations", content=b"{", headers={"Content-Type": "application/json"})
        text = client.get("/metrics").text
    assert 'variantlab_serve_requests_total{endpoint="invocations",status="200"} 1.0' in text
    assert 'variantlab_serve_request_errors_total{endpoint="invocations",status="400"} 1.0' in text
    assert 'variantlab_serve_request_seconds_bucket{endpoint="invocations",le="+Inf"} 2.0' in text
    assert f'variantlab_serve_model_info{{name="{CLASSIFIER}",version="1"}} 1.0' in text
    assert "variantlab_serve_predictions_total 2.0" in text


def test_concurrent_requests_share_model_calls_and_each_get_their_own_answers(
    registry: Registry, tmp_path: Path
) -> None:
    texts = registry.texts[:48]
    expected = dict(zip(texts, direct(registry, "1", texts), strict=True))
    with server(registry, tmp_path, batch_window_ms=20.0) as client:

        def one(text: str) -> tuple[str, object]:
            return text, predict(client, [text])["predictions"][0]  # type: ignore[index]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, texts))
        metrics = client.get("/metrics").text
    assert all(expected[t] == p for t, p in answers)
    count = float(metrics.split("variantlab_serve_batch_rows_count ")[1].split()[0])
    assert count < len(texts), f"{count} model calls for {len(texts)} concurrent requests: nothing was batched"


def test_champion_switch_under_load_fails_no_request_and_happens_at_one_instant(
    registry: Registry, tmp_path: Path
) -> None:
    import mlflow

    client_registry = mlflow.MlflowClient()
    texts = registry.texts[:20]
    v2 = dict(zip(texts, direct(registry, "2", texts), strict=True))
    results: list[tuple[float, float, str, str, object]] = []  # start, end, version, text, prediction
    failures: list[str] = []
    stop = threading.Event()
    try:
        with server(registry, tmp_path) as client:

            def load(worker: int) -> None:
                i = worker
                while not stop.is_set():
                    text = texts[i % len(texts)]
                    i += 1
                    started = time.perf_counter()
                    response = client.post("/invocations", json={"inputs": {"text": [text]}})
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    body = response.json()
                    results.append((started, time.perf_counter(), body["model_version"], text, body["predictions"][0]))

            threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            client_registry.set_registered_model_alias(CLASSIFIER, "champion", "2")
            deadline = time.monotonic() + 60
            while not any(r[2] == "2" for r in results[-20:]) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join()
    finally:
        client_registry.set_registered_model_alias(CLASSIFIER, "champion", "1")
    assert not failures, failures[:3]
    assert {r[2] for r in results} == {"1", "2"}
    first_v2 = min(end for _, end, version, _, _ in results if version == "2")
    late_v1 = [r for r in results if r[2] == "1" and r[0] > first_v2]
    assert not late_v1, f"{len(late_v1)} requests sent after version 2 answered were answered by version 1"
    assert all(pred == v2[text] for _, _, version, text, pred in results if version == "2")  # a whole model


def test_a_service_started_before_any_champion_answers_503_then_serves_it(registry: Registry, tmp_path: Path) -> None:
    import mlflow

    client_registry = mlflow.MlflowClient()
    with server(registry, tmp_path, model_uri=f"models:/{CLASSIFIER}@canary") as client:
        assert client.get("/ping").status_code == 503
        refused = client.post("/invocations", json={"inputs": {"text": ["hello"]}})
        assert refused.status_code == 503 and "points to no version" in refused.json()["message"]
        client_registry.set_registered_model_alias(CLASSIFIER, "canary", "2")
        deadline = time.monotonic() + 30
        while client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert predict(client, ["hello"])["model_version"] == "2"
    client_registry.delete_registered_model_alias(CLASSIFIER, "canary")
    assert rows(tmp_path, "predictions")[0]["model_version"] == "2"


def test_a_version_that_cannot_load_leaves_the_old_one_serving(registry: Registry, tmp_path: Path) -> None:
    import mlflow

    client_registry = mlflow.MlflowClient()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {python_function: {loader_module: no.such.module}}\n")
    version = client_registry.create_model_version(CLASSIFIER, source=str(broken)).version
    try:
        with server(registry, tmp_path) as client:
            client_registry.set_registered_model_alias(CLASSIFIER, "champion", version)
            deadline = time.monotonic() + 10
            failed = "variantlab_serve_model_load_failures_total 1.0"
            while time.monotonic() < deadline and failed not in client.get("/metrics").text:
                time.sleep(0.2)
            time.sleep(1.0)  # several polls later: not retried at each poll, still version 1
            body = predict(client, registry.texts[:2])
            assert body["model_version"] == "1" and body["predictions"] == direct(registry, "1", registry.texts[:2])
            assert failed in client.get("/metrics").text
    finally:
        client_registry.set_registered_model_alias(CLASSIFIER, "champion", "1")
        client_registry.delete_model_version(CLASSIFIER, version)


@pytest.mark.parametrize("argv", [["serve-model", "--help"], ["serve-flows", "--help"], ["serve", "--help"]])
def test_the_two_serve_commands_have_distinct_names_and_the_old_one_still_works(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from variantlab.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert ("/invocations" in out) == (argv[0] == "serve-model")
    assert ("Prefect" in out or "cron" in out) == (argv[0] != "serve-model")


@contextmanager
def shadow_server(registry: Registry, tmp_path: Path, **overrides: object) -> Iterator[tuple[httpx.Client, object]]:
    app = create_app(settings(registry, tmp_path, shadow_share=1.0, **overrides))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, app.state.shadow


def metric(client: httpx.Client, name: str) -> float:
    line = next(line for line in client.get("/metrics").text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_the_shadow_challenger_never_reaches_clients_and_its_disagreements_build_the_paired_table(
    registry: Registry, tmp_path: Path
) -> None:
    import mlflow

    from variantlab.serving.log import PredictionLog

    client_registry = mlflow.MlflowClient()
    # texts neither version was trained on, cut short, so the two versions disagree on some of them
    texts = [" ".join(t.split()[: max(3, len(t.split()) // 2)]) + f" {i}" for i, t in enumerate(registry.texts[:60])]
    v1, v2 = direct(registry, "1", texts), direct(registry, "2", texts)
    differ = {t for t, a, b in zip(texts, v1, v2, strict=True) if a != b}
    assert 0 < len(differ) < len(texts)  # the two versions disagree on some texts, not all
    client_registry.set_registered_model_alias(CLASSIFIER, "challenger", "2")
    try:
        with shadow_server(registry, tmp_path) as (client, shadow):
            deadline = time.monotonic() + 30
            while shadow.slot.current is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.05)
            ids: dict[str, str] = {}
            for start in range(0, len(texts), 7):  # several requests, as clients send them
                chunk = texts[start : start + 7]
                body = predict(client, chunk)
                assert body["model_version"] == "1" and body["predictions"] == v1[start : start + 7]
                ids.update(zip(body["prediction_ids"], chunk, strict=True))  # type: ignore[arg-type]
            shadow.drain()  # type: ignore[attr-defined]
            shadowed = rows(tmp_path, "shadow_predictions")
            assert len(shadowed) == len(texts) and {r["model_version"] for r in shadowed} == {"2"}
            by_text = {ids[str(r["prediction_id"])]: r for r in shadowed}
            assert all(json.loads(str(by_text[t]["output"])) == b for t, b in zip(texts, v2, strict=True))
            assert {t for t, r in by_text.items() if not r["agrees"]} == differ
            assert metric(client, "variantlab_shadow_predictions_total") == len(texts)
            assert metric(client, "variantlab_shadow_disagreement_rate") == pytest.approx(len(differ) / len(texts))

            queue = client.get("/feedback/queue", params={"limit": 1000}).json()
            assert queue["challenger_version"] == "2" and queue["count"] == len(differ)
            assert {row["text"] for row in queue["rows"]} == differ
            assert all(row["champion"] != row["challenger"] for row in queue["rows"])
            for row in queue["rows"][:5]:  # feedback on disagreements leaves the queue and enters the table
                said = {"prediction_id": row["prediction_id"], "label": row["challenger"]}
                sent = client.post("/feedback", json=said)
                assert sent.status_code == 201, sent.text
            assert client.get("/feedback/queue").json()["count"] == len(differ) - 5
            for bad in ({"limit": "0"}, {"limit": "x"}, {"limit": "5", "page": "2"}):
                refused = client.get("/feedback/queue", params=bad)
                assert refused.status_code == 400 and refused.json()["message"], bad

            log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}")
            table, total, disagreed = log.paired_feedback("1", "2")
            log.engine.dispose()
            assert (total, disagreed, len(table)) == (len(texts), len(differ), 5)
            assert (table["label"] == table["challenger_output"]).all() and not table["agrees"].any()

            # the hot switch works with a shadow loaded: @champion moves to the challenger, the shadow goes idle
            client_registry.set_registered_model_alias(CLASSIFIER, "champion", "2")
            deadline = time.monotonic() + 30
            while predict(client, texts[:1])["model_version"] != "2" and time.monotonic() < deadline:
                time.sleep(0.1)
            shadow.drain()  # type: ignore[attr-defined]
            before = len(rows(tmp_path, "shadow_predictions"))
            assert predict(client, texts[:3])["predictions"] == v2[:3]
            shadow.drain()  # type: ignore[attr-defined]
            assert len(rows(tmp_path, "shadow_predictions")) == before  # the same version: nothing shadowed
    finally:
        client_registry.set_registered_model_alias(CLASSIFIER, "champion", "1")
        client_registry.delete_registered_model_alias(CLASSIFIER, "challenger")


def test_a_shadow_of_another_task_is_refused_and_the_champion_keeps_serving(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    client_registry = mlflow.MlflowClient()
    source = client_registry.get_model_version(REGRESSOR, "1").source
    version = client_registry.create_model_version(CLASSIFIER, source=source).version  # a regressor, filed here
    client_registry.set_registered_model_alias(CLASSIFIER, "challenger", version)
    try:
        with shadow_server(registry, tmp_path) as (client, shadow):
            deadline = time.monotonic() + 30
            while metric(client, "variantlab_shadow_refused_total") < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert metric(client, "variantlab_shadow_refused_total") >= 1
            assert shadow.slot.current is None  # type: ignore[attr-defined]
            body = predict(client, registry.texts[:4])
            assert body["model_version"] == "1" and body["predictions"] == direct(registry, "1", registry.texts[:4])
            shadow.drain()  # type: ignore[attr-defined]
            assert rows(tmp_path, "shadow_predictions") == []
        assert "answers a different task" in capsys.readouterr().err
    finally:
        client_registry.delete_registered_model_alias(CLASSIFIER, "challenger")
        client_registry.delete_model_version(CLASSIFIER, version)
