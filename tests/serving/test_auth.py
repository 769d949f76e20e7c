"""serve-model's bearer tokens over real HTTP: scopes, 401 and 403 with one line each (counted), a token file that
holds only digests, tokens created and revoked while the service runs, and the refusal to serve beyond loopback
without tokens."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.serving.conftest import CLASSIFIER, Registry
from tests.serving.test_model_server import settings
from variantlab.serving import auth
from variantlab.serving.app import ServeSettings, create_app, running


@contextmanager
def guarded_server(registry: Registry, tmp_path: Path, tokens: Path, *, loopback: bool) -> Iterator[httpx.Client]:
    base = settings(registry, tmp_path)
    app = create_app(ServeSettings(base.model_uri, base.log_url, base.config, tokens=tokens, loopback=loopback))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_scopes_decide_who_may_predict_teach_and_scrape(registry: Registry, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    _, predictor = auth.create(tokens, "app", ["predict"])
    _, teacher = auth.create(tokens, "labellers", ["predict", "feedback"])
    _, scraper = auth.create(tokens, "prometheus", ["metrics"])
    stored = tokens.read_text()
    assert predictor not in stored and teacher not in stored and auth.digest(teacher) in stored  # digests only
    body = {"inputs": {"text": ["a warm day"]}}
    with guarded_server(registry, tmp_path, tokens, loopback=False) as client:
        assert client.get("/ping").status_code == 200  # health checks need nothing
        refused = {
            "missing": client.post("/invocations", json=body),
            "wrong header": client.post("/invocations", json=body, headers={"X-API-Key": predictor}),
            "query string": client.post("/invocations", json=body, params={"token": predictor}),
            "forged": client.post("/invocations", json=body, headers=bearer(predictor[:-4] + "AAAA")),
            "unknown id": client.post("/invocations", json=body, headers=bearer("vl_00000000_" + "x" * 43)),
            "not bearer": client.post("/invocations", json=body, headers={"Authorization": f"Basic {predictor}"}),
        }
        for case, response in refused.items():
            assert response.status_code == 401, case
            assert response.json()["error_code"] == "UNAUTHENTICATED" and response.json()["message"], case
        assert "Authorization: Bearer" in refused["wrong header"].json()["message"]
        answered = client.post("/invocations", json=body, headers=bearer(predictor))
        assert answered.status_code == 200, answered.text
        pid = answered.json()["prediction_ids"][0]
        wrong_scope = client.post("/feedback", json={"prediction_id": pid, "label": "hot"}, headers=bearer(predictor))
        assert wrong_scope.status_code == 403 and "lacks scope 'feedback'" in wrong_scope.json()["message"]
        taught = client.post("/feedback", json={"prediction_id": pid, "label": "hot"}, headers=bearer(teacher))
        assert taught.status_code == 201, taught.text
        assert client.get("/metrics").status_code == 401
        scraped = client.get("/metrics", headers=bearer(scraper))
        assert scraped.status_code == 200
        assert 'variantlab_serve_auth_failures_total{endpoint="invocations",reason="missing"} 1.0' in scraped.text
        assert 'variantlab_serve_auth_failures_total{endpoint="feedback",reason="scope"} 1.0' in scraped.text

        # revoked and created while the service runs: no restart
        record = next(r for r in auth.read_records(tokens) if r.name == "app")
        auth.revoke(tokens, record.id)
        _, late = auth.create(tokens, "late", ["predict"])
        deadline = time.monotonic() + 10
        while client.post("/invocations", json=body, headers=bearer(predictor)).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.2)
        revoked = client.post("/invocations", json=body, headers=bearer(predictor))
        assert f"token {record.id} was revoked" in revoked.json()["message"]
        assert client.post("/invocations", json=body, headers=bearer(late)).status_code == 200


def test_on_loopback_predictions_stay_open_but_feedback_needs_a_token(registry: Registry, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    _, teacher = auth.create(tokens, "labellers", ["feedback"])
    with guarded_server(registry, tmp_path, tokens, loopback=True) as client:
        answered = client.post("/invocations", json={"inputs": {"text": ["a cold night"]}})
        assert answered.status_code == 200
        pid = answered.json()["prediction_ids"][0]
        anonymous = client.post("/feedback", json={"prediction_id": pid, "label": "cold"})
        assert anonymous.status_code == 401
        assert (
            client.post("/feedback", json={"prediction_id": pid, "label": "cold"}, headers=bearer(teacher)).status_code
            == 201
        )
        again = client.post("/feedback", json={"prediction_id": pid, "label": "mild"}, headers=bearer(teacher))
        assert again.status_code == 409  # a second correction for one prediction


def test_expired_tokens_get_401_and_revoking_every_token_locks_the_service_rather_than_opening_it(
    registry: Registry, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    short, brief = auth.create(tokens, "contractor", ["predict", "feedback"], days=2 / 86400)  # two seconds
    long, lasting = auth.create(tokens, "app", ["predict"], days=30)
    assert short.expires_at and long.expires_at and "active until" in long.state()
    body = {"inputs": {"text": ["a grey morning"]}}
    with guarded_server(registry, tmp_path, tokens, loopback=False) as client:
        assert client.post("/invocations", json=body, headers=bearer(brief)).status_code == 200
        time.sleep(2.2)
        expired = client.post("/invocations", json=body, headers=bearer(brief))
        assert expired.status_code == 401 and f"token {short.id} expired at" in expired.json()["message"]
        assert client.post("/invocations", json=body, headers=bearer(lasting)).status_code == 200
        auth.revoke(tokens, long.id)
        deadline = time.monotonic() + 10
        while client.post("/invocations", json=body, headers=bearer(lasting)).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.2)
        anonymous = client.post("/invocations", json=body)  # no usable token is left: locked, not open
        assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHENTICATED"
    assert not auth.TokenStore(tokens).enabled and auth.TokenStore(tokens).guarded
    try:
        auth.create(tokens, "never", ["predict"], days=0)
        raise AssertionError("days=0 was accepted")
    except auth.ConfigError as error:
        assert "--days must be more than 0" in str(error)


def test_serve_token_cli_and_the_refusal_to_serve_beyond_loopback_without_tokens(tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "variantlab.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    refused = cli("serve-model", f"models:/{CLASSIFIER}@champion", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode != 0 and "needs tokens" in refused.stderr and "--insecure" in refused.stderr
    created = cli("serve-token", "create", "--scopes", "predict,feedback", "--name", "team")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("vl_")
    stored = json.loads((tmp_path / ".variantlab/serve-tokens.json").read_text())
    assert token not in json.dumps(stored) and stored["tokens"][0]["sha256"] == auth.digest(token)
    bad = cli("serve-token", "create", "--scopes", "predict,admin")
    assert bad.returncode != 0 and "scopes must be some of" in bad.stderr
    token_id = token.split("_")[1]
    assert cli("serve-token", "revoke", token_id).returncode == 0
    listed = cli("serve-token", "list")
    assert token_id in listed.stdout and "revoked" in listed.stdout
    assert cli("serve-token", "revoke", "nope").returncode != 0


def test_a_burst_past_the_rate_limit_gets_429_with_retry_after_and_feedback_records_its_source(
    registry: Registry, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    tokens = tmp_path / "tokens.json"
    record, teacher = auth.create(tokens, "labellers", ["predict", "feedback", "metrics"])
    base = settings(registry, tmp_path, predict_rate=5.0)
    app = create_app(ServeSettings(base.model_uri, base.log_url, base.config, tokens=tokens, loopback=False))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        codes = [
            client.post("/invocations", json={"inputs": {"text": ["a day"]}}, headers=bearer(teacher))
            for _ in range(12)
        ]
        limited = [r for r in codes if r.status_code == 429]
        assert 5 <= sum(r.status_code == 200 for r in codes) <= 8 and limited  # a burst of 5, then 5 a second
        assert int(limited[0].headers["Retry-After"]) >= 1 and "serve.predict_rate" in limited[0].json()["message"]
        time.sleep(1.0)
        answered = client.post("/invocations", json={"inputs": {"text": ["a day"]}}, headers=bearer(teacher))
        assert answered.status_code == 200  # the bucket refills
        pid = answered.json()["prediction_ids"][0]
        sent = client.post("/feedback", json={"prediction_id": pid, "label": "mild"}, headers=bearer(teacher))
        assert sent.status_code == 201 and sent.json()["source"] == record.id
        scraped = client.get("/metrics", headers=bearer(teacher)).text
        assert f'variantlab_serve_rate_limited_total{{endpoint="invocations"}} {len(limited)}.0' in scraped
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")
    with engine.connect() as connection:
        sources = connection.execute(sa.text("SELECT source FROM feedback")).scalars().all()
    engine.dispose()
    assert sources == [record.id]  # the token's id, never its secret


def test_an_older_prediction_log_gains_the_source_column_when_opened(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from variantlab.serving.log import PredictionLog

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # the feedback table as it was before provenance
        connection.execute(
            sa.text("CREATE TABLE feedback (prediction_id VARCHAR(32) PRIMARY KEY, created_at DATETIME)")
        )
    engine.dispose()
    log = PredictionLog(url)
    columns = {c["name"] for c in sa.inspect(log.engine).get_columns("feedback")}
    log.engine.dispose()
    assert "source" in columns


def test_a_quarantined_source_is_refused_and_its_rows_stay_out_of_exports(registry: Registry, tmp_path: Path) -> None:
    from variantlab.serving.log import PredictionLog

    tokens = tmp_path / "tokens.json"
    good_record, good = auth.create(tokens, "team", ["predict", "feedback"])
    bad_record, bad = auth.create(tokens, "spammer", ["predict", "feedback"])
    with guarded_server(registry, tmp_path, tokens, loopback=False) as client:
        ids = client.post("/invocations", json={"inputs": {"text": ["a", "b", "c"]}}, headers=bearer(good)).json()[
            "prediction_ids"
        ]
        assert (
            client.post("/feedback", json={"prediction_id": ids[0], "label": "hot"}, headers=bearer(good)).status_code
            == 201
        )
        assert (
            client.post("/feedback", json={"prediction_id": ids[1], "label": "cold"}, headers=bearer(bad)).status_code
            == 201
        )
        done = subprocess.run(
            [sys.executable, "-m", "variantlab.cli", "feedback", "quarantine", bad_record.id, "--reason", "spam",
             "--log-url", f"sqlite:///{tmp_path / 'predictions.db'}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        refused = client.post("/feedback", json={"prediction_id": ids[2], "label": "mild"}, headers=bearer(bad))
        assert refused.status_code == 403 and "quarantined" in refused.json()["message"]
    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}")
    waiting = log.waiting_feedback()
    assert set(waiting["source"]) == {good_record.id}  # the quarantined source's row stays out
    assert log.quarantined() == {bad_record.id: "spam"}
    assert log.release(bad_record.id) and set(log.waiting_feedback()["source"]) == {good_record.id, bad_record.id}
    log.close()


def test_every_bad_feedback_request_gets_one_4xx_line_logs_nothing_and_the_service_stays_up(
    registry: Registry, tmp_path: Path
) -> None:
    """The issue's bad-input list, all at /feedback on one service: forged, expired, revoked, misplaced tokens,
    a quarantined source, a burst past the limit and a second correction. Only the one good correction lands."""
    import sqlalchemy as sa

    from variantlab.serving.log import PredictionLog

    tokens = tmp_path / "tokens.json"
    good_record, good = auth.create(tokens, "team", ["predict", "feedback"])
    gone_record, gone = auth.create(tokens, "former", ["feedback"])
    _, brief = auth.create(tokens, "contractor", ["feedback"], days=1 / 86400)  # one second
    spam_record, spam = auth.create(tokens, "spammer", ["feedback"])
    auth.revoke(tokens, gone_record.id)
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    log = PredictionLog(log_url)
    log.quarantine(spam_record.id, "spam")
    log.close()
    time.sleep(1.1)  # the contractor's token has expired
    base = settings(registry, tmp_path, feedback_rate=2.0)
    app = create_app(ServeSettings(base.model_uri, base.log_url, base.config, tokens=tokens, loopback=False))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        texts = [f"day {i}" for i in range(12)]
        ids = client.post("/invocations", json={"inputs": {"text": texts}}, headers=bearer(good)).json()[
            "prediction_ids"
        ]
        first = client.post("/feedback", json={"prediction_id": ids[0], "label": "hot"}, headers=bearer(good))
        assert first.status_code == 201, first.text
        cases = {
            "forged": (401, bearer(good[:-3] + "abc")),
            "expired": (401, bearer(brief)),
            "revoked": (401, bearer(gone)),
            "wrong header": (401, {"X-API-Key": good}),
            "quarantined": (403, bearer(spam)),
            "second correction": (409, bearer(good)),
        }
        for case, (status, headers) in cases.items():
            pid = ids[0] if case == "second correction" else ids[1]
            answer = client.post("/feedback", json={"prediction_id": pid, "label": "cold"}, headers=headers)
            assert answer.status_code == status, (case, answer.text)
            message = answer.json()["message"]
            assert message and "\n" not in message and "Traceback" not in message, case
        burst = [
            client.post("/feedback", json={"prediction_id": pid, "label": "mild"}, headers=bearer(good))
            for pid in ids[2:]
        ]
        codes = [r.status_code for r in burst]
        assert 429 in codes and codes.count(201) <= 3, codes  # a burst of two, then two a second
        assert all("Retry-After" in r.headers for r in burst if r.status_code == 429)
        assert client.get("/ping").status_code == 200  # still up
        accepted = 1 + codes.count(201)
    engine = sa.create_engine(log_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT prediction_id, label, source FROM feedback")).all()
    engine.dispose()
    assert len(rows) == accepted and {r.source for r in rows} == {good_record.id}
    assert ("cold" not in {r.label for r in rows}) and ids[1] not in {r.prediction_id for r in rows}
