"""What a user sees in the MLflow UI after `variantlab run`, checked in a real browser (Debian's Chromium, headless).

A tiny pipeline (TF-IDF, a probe and LoRA on a tiny BERT) runs into its own store; `variantlab ui` serves it on
loopback; Selenium drives Chromium through the pages the walkthrough (docs/walkthrough.md) shows, and saves a
screenshot of each. ``VARIANTLAB_SCREENSHOTS=<dir>`` keeps them there (the docs' images come from this test).

Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`; `.ci/run` does it).
Without them the test is skipped here, and fails under ``VARIANTLAB_REQUIRE_BROWSER=1`` (CI), so it never
passes by not running. Nothing downloads a browser or a driver.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, run, tiny_project, tiny_sentences

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MODEL = "variantlab-sentiment"


@dataclass
class Store:
    project: Path
    experiment_id: str
    parent: dict[str, str]  # run_id, name
    runs: dict[str, str]  # run name -> run id, children of the parent
    macro_f1: dict[str, float]  # evaluate run name -> macro_f1


def read_store(project: Path) -> Store:
    with sqlite3.connect(project / "mlflow.db") as db:
        experiment_id, parent_id, parent_name = db.execute(
            "select r.experiment_id, r.run_uuid, r.name from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'variantlab.stage' and t.value = 'pipeline' order by r.start_time desc limit 1"
        ).fetchone()
        children = dict(
            db.execute(
                "select r.name, r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'mlflow.parentRunId' and t.value = ?",
                (parent_id,),
            ).fetchall()
        )
        scores = {
            name: float(value)
            for name, value in db.execute(
                "select r.name, m.value from runs r join latest_metrics m on m.run_uuid = r.run_uuid "
                "where m.key = 'macro_f1' and r.run_uuid in (select run_uuid from tags "
                "where key = 'mlflow.parentRunId' and value = ?)",
                (parent_id,),
            ).fetchall()
        }
    return Store(project, str(experiment_id), {"run_id": parent_id, "name": parent_name}, children, scores)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_bert: tuple[Path, str]) -> Store:
    project = tiny_project(tmp_path_factory.mktemp("ui") / "p", *tiny_bert, data=tiny_sentences(240))
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return read_store(project)


@pytest.fixture(scope="module")
def ui(store: Store) -> Iterator[str]:
    from variantlab.proc.services import free_port, stop, wait_http

    port = free_port()
    log = (store.project.parent / "mlflow-ui.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "variantlab.cli", "ui", "--port", str(port)],
        cwd=store.project,
        env=clean_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, proc)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)  # type: ignore[arg-type]
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("VARIANTLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1600,1000", "--force-device-scale-factor=1", "--lang=en-US"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(os.environ.get("VARIANTLAB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def page_text(driver: Any) -> str:
    return str(driver.find_element("tag name", "body").text)


def wait_for_text(driver: Any, *needles: str, timeout: float = 60) -> str:
    """The page's visible text once every needle is in it (the UI renders after its API calls return)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> str | bool:
        text = page_text(d)
        return text if all(n in text for n in needles) else False

    try:
        return str(WebDriverWait(driver, timeout, poll_frequency=0.5).until(ready))
    except Exception as exc:  # selenium's TimeoutException: say what was missing and what was there
        text = page_text(driver)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"{driver.current_url}: never showed {missing}; page text:\n{text[:3000]}") from exc


def click_all(driver: Any, xpath: str) -> int:
    clicked = 0
    for element in driver.find_elements("xpath", xpath):
        if element.is_displayed():
            element.click()
            clicked += 1
    return clicked


def open_page(driver: Any, url: str, *needles: str) -> str:
    """Load ``url`` in the model-training view without the assistant panel, once ``needles`` show."""
    driver.get(url)
    text = wait_for_text(driver, *needles)
    if click_all(driver, "//button[normalize-space(.)='Model training']"):  # the sidebar's workflow switch
        text = wait_for_text(driver, *needles)
    click_all(driver, "//button[@aria-label='Close']")  # the MLflow Assistant side panel
    return text


def test_experiment_page_lists_the_pipeline_run_and_its_stage_runs(
    store: Store, ui: str, browser: Any, shots: Path
) -> None:
    open_page(browser, f"{ui}/#/experiments/{store.experiment_id}/runs", store.parent["name"])
    # the parent run is shown collapsed: open it, as a user clicks the [+] next to its name
    assert click_all(browser, "//button[contains(@data-component-id, 'runnamecellrenderer')]") >= 1
    names = ["train:tfidf-logreg", "train:tiny-lora", "evaluate:tiny-probe", "evaluate:tiny-lora", "compare", "promote"]
    text = wait_for_text(browser, store.parent["name"], *names)
    assert f"{len(store.runs) + 1} matching runs" in text  # the parent and every stage run, nothing else
    browser.save_screenshot(str(shots / "1-experiment-runs.png"))


def test_compare_view_shows_macro_f1_of_every_variant(store: Store, ui: str, browser: Any, shots: Path) -> None:
    evaluated = {name: run_id for name, run_id in store.runs.items() if name.startswith("evaluate:")}
    assert len(evaluated) == 3
    ids = json.dumps(list(evaluated.values()))
    url = f"{ui}/#/compare-runs?runs={ids}&experiments={json.dumps([store.experiment_id])}"
    open_page(browser, url, "Metrics", "accuracy", *evaluated)
    name = scroll_to_metric(browser, "macro_f1")
    # the metrics grid lays rows out absolutely: the values sit at the same height as the metric's name
    top = re.search(r"top: ([0-9.]+px)", name.get_attribute("style") or "")
    assert top, name.get_attribute("outerHTML")
    cells = [c.text for c in browser.find_elements("xpath", f"//div[contains(@style, 'top: {top.group(1)}')]")]
    shown = [float(c) for c in cells if re.fullmatch(r"[-0-9.e]+", c)]
    expected = [store.macro_f1[n] for n in evaluated]
    assert len(shown) == len(expected), cells
    assert all(math.isclose(a, b, rel_tol=5e-3) for a, b in zip(shown, expected, strict=True)), (shown, expected)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", name)
    browser.save_screenshot(str(shots / "2-compare-variants.png"))


def scroll_to_metric(driver: Any, metric: str) -> Any:
    """The compare page renders only the metric rows in view: scroll its metrics grid until ``metric`` shows."""
    xpath = f"//a[normalize-space(text())='{metric}']/.."
    first = driver.find_element("xpath", "//a[normalize-space(text())='accuracy']")
    for _ in range(60):
        if found := driver.find_elements("xpath", xpath):
            return found[0]
        driver.execute_script(
            """let e = arguments[0];
            while (e && !(e.scrollHeight > e.clientHeight + 5 && getComputedStyle(e).overflowY !== 'visible')) {
              e = e.parentElement;
            }
            (e || document.scrollingElement).scrollTop += 120;""",
            first,
        )
        time.sleep(0.2)
    raise AssertionError(f"metric {metric} never appeared on the compare page:\n{page_text(driver)[:3000]}")


def test_registered_model_page_shows_the_champion(store: Store, ui: str, browser: Any, shots: Path) -> None:
    promotion = json.loads((store.project / "reports/promotion.json").read_text())
    champion = str(promotion["champion_after"])
    open_page(browser, f"{ui}/#/models/{MODEL}", MODEL, f"Version {champion}")
    link = browser.find_element("xpath", f"//a[normalize-space(.)='Version {champion}']")
    row = link.find_element("xpath", "./ancestor::*[@role='row' or self::tr][1]")
    assert "champion" in row.text and promotion["challenger"]["variant"] in row.text, row.text  # alias, variant tag
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    browser.save_screenshot(str(shots / "3-registered-model.png"))


def test_parent_run_artifacts_hold_the_leaderboard_and_pareto_plot(
    store: Store, ui: str, browser: Any, shots: Path
) -> None:
    url = f"{ui}/#/experiments/{store.experiment_id}/runs/{store.parent['run_id']}/artifacts"
    open_page(browser, url, "leaderboard.md", "leaderboard.csv", "pareto.png", "params.yaml")
    assert click_all(browser, "//*[normalize-space(text())='pareto.png']") >= 1
    from selenium.webdriver.support.ui import WebDriverWait

    # the preview is the logged PNG itself: an image as wide as reports/pareto.png
    width = struct.unpack(">I", (store.project / "reports/pareto.png").read_bytes()[16:20])[0]

    def preview(d: Any) -> Any:
        for image in d.find_elements("css selector", "img[src^='blob:']"):
            if image.is_displayed() and d.execute_script("return arguments[0].naturalWidth", image) == width:
                return image
        return False

    WebDriverWait(browser, 30).until(preview)
    browser.save_screenshot(str(shots / "4-parent-artifacts.png"))


def test_models_tab_lists_every_variant_by_name_with_its_macro_f1(
    store: Store, ui: str, browser: Any, shots: Path
) -> None:
    """The experiment's Models tab is the leaderboard: one logged model per variant, named by it, with its test
    macro-F1 (opened in the model-training view, as `variantlab ui` prints the link)."""
    variants = sorted(name.split(":", 1)[1] for name in store.runs if name.startswith("evaluate:"))
    url = f"{ui}/#/experiments/{store.experiment_id}/models?workflowType=machine_learning"
    browser.set_window_size(3600, 1000)  # the grid renders only the columns in view; the metrics come last
    text = open_page(browser, url, *variants, "macro_f1")
    for variant in variants:
        named = browser.find_element("xpath", f"//a[normalize-space(.)='{variant}']/ancestor::*[@role='row'][1]")
        index = named.get_attribute("aria-rowindex") or named.get_attribute("row-index")
        # the grid draws a row in parts (pinned name column, scrolled columns): join every part of this row
        parts = browser.find_elements("xpath", f"//*[@role='row' and @aria-rowindex='{index}']") or [named]
        header = browser.find_element("xpath", "//*[@role='columnheader'][.//*[normalize-space(text())='macro_f1']]")
        column = header.get_attribute("aria-colindex")  # the test-split macro_f1 column (its col-id names the dataset)
        assert "test-split" in str(header.get_attribute("col-id")), header.get_attribute("col-id")
        cells = [c.text for p in parts for c in p.find_elements("xpath", f".//*[@aria-colindex='{column}']")]
        expected = store.macro_f1[f"evaluate:{variant}"]
        assert len(cells) == 1 and math.isclose(float(cells[0]), expected, abs_tol=6e-3), (variant, expected, cells)
    assert "Agent versions" not in text  # the model-training view, not the GenAI one
    browser.save_screenshot(str(shots / "0-models-tab.png"))


def test_comparing_two_variant_runs_shows_their_differing_params_and_metrics(
    store: Store, ui: str, browser: Any, shots: Path
) -> None:
    """Two evaluate runs side by side: the variant's params (copied from its train run) and its test metrics on
    the same page; with "Show diff only", a param they share disappears and one that differs stays."""
    ids = [store.runs["evaluate:tfidf-logreg"], store.runs["evaluate:tiny-lora"]]
    url = f"{ui}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([store.experiment_id])}"
    text = open_page(browser, url, "Parameters", "variant.kind", "seed", "tfidf-logreg", "lora", "accuracy")
    assert "variant.lora.rank" in text or "variant.C" in text, text[:3000]
    shared, differing = re.compile(r"^seed\b", re.M), re.compile(r"^variant\.kind\s+tfidf-logreg\s+lora$", re.M)
    shown = page_text(browser)  # a row reads "<param> <value of run 1> <value of run 2>"
    assert shared.search(shown) and differing.search(shown), shown[-3000:]
    switches = browser.find_elements(
        "xpath", "//*[normalize-space(text())='Show diff only']/ancestor-or-self::*[.//button[@role='switch']][1]"
    )
    assert switches, "no 'Show diff only' switch on the compare page"
    switches[0].find_element("xpath", ".//button[@role='switch']").click()
    from selenium.webdriver.support.ui import WebDriverWait

    def seed_gone(d: Any) -> bool:
        shown = page_text(d)
        return bool(differing.search(shown)) and not shared.search(shown)

    WebDriverWait(browser, 30).until(seed_gone)  # the shared seed is hidden, the differing kind stays
    browser.save_screenshot(str(shots / "2b-compare-diff-only.png"))
