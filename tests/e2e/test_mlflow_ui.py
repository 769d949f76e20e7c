"""What a user sees in the MLflow UI after `variantlab run`, checked in a real browser (Debian's Chromium, headless).

With ``VARIANTLAB_E2E_PROJECT`` naming a checkout where `make run` just ran (what `.ci/run` sets), the test
opens that store: the default pipeline's six variants on the VADER corpus, with their real numbers. Without it,
a tiny pipeline (TF-IDF, a probe and LoRA on a tiny BERT) runs into a store of its own first. Either way
`variantlab ui` serves the store on loopback and Selenium drives Chromium through the pages the walkthrough
(docs/walkthrough.md) shows, saving a screenshot of each. ``VARIANTLAB_SCREENSHOTS=<dir>`` keeps them there:
the docs' images come from this test on the default run.

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

from tests.helpers import clean_env, made_run, run, tiny_project, tiny_sentences
from variantlab.cli import ML_VIEW

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@dataclass
class Store:
    project: Path
    experiment_id: str
    parent: dict[str, str]  # run_id, name
    runs: dict[str, str]  # run name -> run id, children of the parent
    macro_f1: dict[str, float]  # evaluate run name -> test macro_f1
    latency: dict[str, float]  # evaluate run name -> latency_ms_p50 (batch 1)
    kinds: dict[str, str]  # evaluate run name -> the variant's kind (its `variant.kind` param)
    model: str  # the registered model
    total: int  # runs in the experiment: the parent, its stage runs and their nested search trials

    @property
    def evaluated(self) -> dict[str, str]:
        return {name: run_id for name, run_id in self.runs.items() if name.startswith("evaluate:")}


CHILD_VALUES = (
    "select r.name, x.value from runs r join {table} x on x.run_uuid = r.run_uuid where x.key = ? and r.run_uuid in "
    "(select run_uuid from tags where key = 'mlflow.parentRunId' and value = ?)"
)


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

        (total,) = db.execute(
            "select count(*) from runs where experiment_id = ? and lifecycle_stage = 'active'", (experiment_id,)
        ).fetchone()

        def values(table: str, key: str) -> dict[str, str]:
            return dict(db.execute(CHILD_VALUES.format(table=table), (key, parent_id)).fetchall())

        scores, latency, kinds = (
            values("latest_metrics", "macro_f1"),
            values("latest_metrics", "latency_ms_p50"),
            values("params", "variant.kind"),
        )
    promotion = json.loads((project / "reports/promotion.json").read_text())
    return Store(
        project,
        str(experiment_id),
        {"run_id": parent_id, "name": parent_name},
        children,
        {name: float(v) for name, v in scores.items() if name.startswith("evaluate:")},
        {name: float(v) for name, v in latency.items() if name.startswith("evaluate:")},
        {name: v for name, v in kinds.items() if name.startswith("evaluate:")},
        str(promotion["registered_model"]),
        total,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Store:
    """The default run `make run` made (CI), or else a tiny pipeline run into a store of its own."""
    if project := made_run():
        return read_store(project)
    tiny_bert = request.getfixturevalue("tiny_bert")
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


def compare_url(ui: str, store: Store, run_ids: list[str]) -> str:
    experiments = json.dumps([store.experiment_id])
    return f"{ui}/#/compare-runs?runs={json.dumps(run_ids)}&experiments={experiments}"


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


def open_page(driver: Any, url: str, *needles: str, width: int = 1600) -> str:
    """Load ``url`` in the model-training view without the assistant panel, once ``needles`` show."""
    driver.set_window_size(width, 1000)
    if ML_VIEW not in url:  # the link `variantlab ui` prints: the model-training view, not the GenAI one
        url += ("&" if "?" in url.split("#")[-1] else "?") + ML_VIEW
    driver.get("about:blank")  # a fresh page: from one compare URL to another only the hash changes, and the
    driver.get(url)  # app would keep the first page's runs
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
    text = wait_for_text(browser, store.parent["name"], *store.runs)  # every stage run, each variant's two
    assert f"{store.total} matching runs" in text  # the parent, every stage run and its trials, nothing else
    browser.save_screenshot(str(shots / "1-experiment-runs.png"))


def test_compare_view_shows_macro_f1_of_every_variant(store: Store, ui: str, browser: Any, shots: Path) -> None:
    evaluated = store.evaluated
    assert len(evaluated) == len(store.macro_f1) >= 3
    url = compare_url(ui, store, list(evaluated.values()))
    open_page(browser, url, "Metrics", "accuracy", *evaluated)
    name = scroll_to_metric(browser, "macro_f1")
    # the metrics grid lays rows out absolutely: the values sit at the same height as the metric's name
    top = re.search(r"top: ([0-9.]+px)", name.get_attribute("style") or "")
    assert top, name.get_attribute("outerHTML")
    row = browser.find_elements("xpath", f"//div[contains(@style, 'top: {top.group(1)}')]")
    values = [c for c in row if re.fullmatch(r"[-0-9.e]+", c.text)]
    shown = [float(c.text) for c in values]
    expected = [store.macro_f1[n] for n in evaluated]
    assert len(shown) == len(expected), [c.text for c in row]
    assert all(math.isclose(a, b, rel_tol=5e-3) for a, b in zip(shown, expected, strict=True)), (shown, expected)
    # a reader sees the row: the name and each of its values, at the same height
    assert all(browser.execute_script(SHOWN, e) for e in (name, *values)), "the macro_f1 row is hidden in its grid"
    assert all(abs(name.rect["y"] - v.rect["y"]) < 3 for v in values), (name.rect, [v.rect for v in values])
    browser.save_screenshot(str(shots / "2-compare-variants.png"))


# The compare page's metrics are two grids: the names (no scroll bar of their own) and the values, which the
# names follow one scroll event late. Scroll both to the same offset.
SCROLL_GRIDS = """const names = arguments[0];
const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
const values = grids[grids.indexOf(names) + 1];
values.scrollTop = arguments[1] === null ? values.scrollTop + 90 : arguments[1];
names.scrollTop = values.scrollTop;"""

# Whether a reader sees the element: it is what the page shows at its centre (not clipped by its grid).
SHOWN = """const r = arguments[0].getBoundingClientRect();
const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
return !!hit && (arguments[0].contains(hit) || hit.contains(arguments[0]));"""


def scroll_to_metric(driver: Any, metric: str) -> Any:
    """Scroll the compare page's metrics until the row of ``metric`` shows, its values beside it."""
    xpath = f"//a[normalize-space(text())='{metric}']/.."
    first = driver.find_element("xpath", "//a[normalize-space(text())='accuracy']")
    names = driver.execute_script("return arguments[0].closest('.ReactVirtualized__Grid')", first)  # stays put
    section = driver.find_element("xpath", "//*[normalize-space(text())='Metrics']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", section)  # the page, not the grids
    for _ in range(60):
        if found := driver.find_elements("xpath", xpath):  # rendered: put it in the grid's middle
            top = float(re.search(r"top: ([0-9.]+)px", found[0].get_attribute("style") or "top: 0px").group(1))
            driver.execute_script(SCROLL_GRIDS, names, max(0.0, top - 90))
            time.sleep(0.3)
            row = driver.find_element("xpath", xpath)
            if driver.execute_script(SHOWN, row):
                return row
        driver.execute_script(SCROLL_GRIDS, names, None)
        time.sleep(0.2)
    raise AssertionError(f"metric {metric} never appeared on the compare page:\n{page_text(driver)[:3000]}")


def test_registered_model_page_shows_the_champion_and_the_challenger(
    store: Store, ui: str, browser: Any, shots: Path
) -> None:
    promotion = json.loads((store.project / "reports/promotion.json").read_text())
    latest = {move["alias"]: str(move["to_version"]) for move in promotion["alias_moves"]}  # where each now points
    assert set(latest) == {"champion", "challenger"}, promotion["alias_moves"]
    aliases: dict[str, set[str]] = {}
    for alias, version in latest.items():
        aliases.setdefault(version, set()).add(alias)
    open_page(browser, f"{ui}/#/models/{store.model}", store.model, *(f"Version {v}" for v in aliases))
    for version, names in aliases.items():
        link = browser.find_element("xpath", f"//a[normalize-space(.)='Version {version}']")
        row = link.find_element("xpath", "./ancestor::*[@role='row' or self::tr][1]").text
        assert all(f"@ {name}" in row or f"@{name}" in row for name in names), (version, names, row)
    assert promotion["promote"], "the run this page shows promoted no champion: nothing here to check"
    assert promotion["challenger"]["variant"] in page_text(browser)  # the champion version's variant tag
    link = browser.find_element("xpath", f"//a[normalize-space(.)='Version {promotion['champion_after']}']")
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
    variants = sorted(name.split(":", 1)[1] for name in store.evaluated)
    url = f"{ui}/#/experiments/{store.experiment_id}/models"
    # the grid renders only the columns in view, and the metrics come last: a wide window shows them all
    text = open_page(browser, url, *variants, "macro_f1", width=3600)
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
    by_kind = {kind: name for name, kind in sorted(store.kinds.items(), reverse=True)}  # the first run of each kind
    ids = [store.runs[by_kind["tfidf-logreg"]], store.runs[by_kind["lora"]]]
    url = compare_url(ui, store, ids)
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
    title = browser.find_element("xpath", "//*[normalize-space(text())='Show diff only']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", title)
    browser.save_screenshot(str(shots / "2b-compare-diff-only.png"))


def test_chart_of_macro_f1_against_latency_shows_every_variant(
    store: Store, ui: str, browser: Any, shots: Path
) -> None:
    """The compare page's scatter plot, batch-1 latency across and test macro-F1 up: one point per variant, at its
    logged values (the trade-off the Pareto plot draws, explored in the UI)."""
    evaluated = store.evaluated
    url = compare_url(ui, store, list(evaluated.values()))
    open_page(browser, url, "Scatter Plot", *evaluated)
    browser.find_element("xpath", "//*[normalize-space(text())='Scatter Plot']").click()
    choose_option(browser, "x-axis-selector", "latency_ms_p50")
    choose_option(browser, "y-axis-selector", "macro_f1")
    from selenium.webdriver.support.ui import WebDriverWait

    def plotted(d: Any) -> Any:  # what plotly draws: the trace's points and the run name in each hover text
        traces = d.execute_script(
            "return [...document.querySelectorAll('.js-plotly-plot')].flatMap(p => (p.data || []))"
            ".filter(t => t.mode === 'markers').map(t => ({x: t.x, y: t.y, text: t.text}))"
        )
        return traces if traces and len(traces[0]["x"]) == len(evaluated) else False

    (trace,) = WebDriverWait(browser, 30).until(plotted)
    names = [re.sub(r"^<b>(.*?)</b>.*$", r"\1", text, flags=re.S) for text in trace["text"]]
    points = dict(zip(names, zip(trace["x"], trace["y"], strict=True), strict=True))
    assert set(points) == set(evaluated)
    for name, (x, y) in points.items():
        assert math.isclose(x, store.latency[name], rel_tol=1e-3) and math.isclose(
            y, store.macro_f1[name], rel_tol=1e-3
        )
    plot = browser.find_element("css selector", ".js-plotly-plot")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    browser.save_screenshot(str(shots / "2c-macro-f1-vs-latency.png"))


def choose_option(driver: Any, select_id: str, text: str) -> None:
    """Pick ``text`` in one of the UI's drop-down selects (a combobox button and a listbox of options)."""
    select = driver.find_element("id", select_id)
    select.click()
    from selenium.webdriver.support.ui import WebDriverWait

    option = WebDriverWait(driver, 10).until(
        lambda d: next((o for o in d.find_elements("css selector", "[role=option]") if o.text == text), False)
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", option)
    option.click()
    WebDriverWait(driver, 10).until(lambda d: d.find_element("id", select_id).get_attribute("value").endswith(text))
