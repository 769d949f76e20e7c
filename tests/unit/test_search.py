"""The search space in params, and Optuna's pruner stopping a real training loop early."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from tests.helpers import REPO
from tests.unit.test_training import build, encoded
from variantlab.config import parse_params
from variantlab.core import search as space
from variantlab.core.training import LoopSettings, train_classifier
from variantlab.errors import ConfigError


def params_with(variant: str, search: dict[str, Any], **extra: Any) -> Any:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"][variant] = {**raw["variants"][variant], **extra, "search": search}
    return parse_params(raw)


def test_a_search_space_over_nested_keys_gives_valid_variants() -> None:
    search = {
        "trials": 5,
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
            "epochs": {"type": "int", "low": 1, "high": 3},
            "lora.rank": {"type": "categorical", "choices": [4, 8, 16]},
        },
    }
    cfg = params_with("minilm-lora", search).variants["minilm-lora"]
    trial = optuna.trial.FixedTrial({"lr": 1e-3, "epochs": 2, "lora.rank": 16})
    values = space.suggest(trial, cfg.search.space)
    chosen = cfg.with_values(values)
    assert (chosen.lr, chosen.epochs, chosen.lora.rank, chosen.lora.alpha) == (1e-3, 2, 16, 16)
    assert chosen.search is None and cfg.lora.rank == 8  # the declared variant is unchanged
    assert space.budget(cfg.search) == 5 and space.max_epochs(cfg.search, cfg.epochs) == 3


@pytest.mark.parametrize(
    ("variant", "search", "message"),
    [
        ("minilm-lora", {"space": {"lora.ranks": {"type": "int", "low": 1, "high": 4}}}, "lora.ranks: not a search"),
        ("minilm-lora", {"space": {"model": {"type": "categorical", "choices": ["x"]}}}, "model: not a searchable"),
        ("minilm-full", {"space": {"epochs": {"type": "int", "low": 0, "high": 2}}}, "the value 0 does not fit"),
        ("minilm-full", {"space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-4}}}, "needs `low` < `high`"),
        ("tfidf-logreg", {"space": {"C": {"type": "float", "low": 0, "high": 1, "log": True}}}, "needs low > 0"),
        ("tfidf-logreg", {"space": {"C": {"type": "categorical"}}}, "needs `choices`"),
        ("tfidf-logreg", {"sampler": "grid", "space": {"C": {"type": "float", "low": 1, "high": 2}}}, "grid sampler"),
        ("tfidf-logreg", {"space": {"C": {"type": "float", "low": 1, "high": 2}}, "bogus": 1}, "unknown key"),
    ],
)
def test_a_bad_search_space_is_one_clear_config_error(variant: str, search: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"params\.yaml") as error:
        params_with(variant, search)
    assert message in str(error.value) and f"variants.{variant}" in str(error.value)


def test_a_search_cannot_share_processes_with_ddp() -> None:
    search = {"space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-3}}}
    with pytest.raises(ConfigError, match="one process each"):
        params_with("minilm-full", search, processes=2)


def test_the_grid_is_every_combination() -> None:
    search = {
        "sampler": "grid",
        "trials": None,
        "space": {
            "ngram_max": {"type": "int", "low": 1, "high": 3},
            "C": {"type": "float", "low": 0.5, "high": 1.5, "step": 0.5},
            "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
        },
    }
    cfg = params_with("tfidf-logreg", search).variants["tfidf-logreg"]
    assert cfg.search.grid() == {"ngram_max": [1, 2, 3], "C": [0.5, 1.0, 1.5], "class_weight": [None, "balanced"]}
    assert space.budget(cfg.search) == 18
    study = optuna.create_study(sampler=space.sampler(cfg.search, seed=0), direction="maximize")
    study.optimize(lambda t: float(len(str(space.suggest(t, cfg.search.space)))), n_trials=18)
    seen = {tuple(sorted(t.params.items(), key=str)) for t in study.trials}
    assert len(seen) == 18  # each grid point exactly once


def test_a_pruned_trial_stops_training_after_the_epoch_it_falls_behind(tiny_bert: tuple[Path, str]) -> None:
    """Median pruning on the loop's per-epoch validation macro-F1: a trial far below the median of the trials
    before it at epoch 1 is stopped there; it does not run its other epochs."""
    model, tokenizer = build(tiny_bert)
    train, val = encoded(tokenizer, 90, seed=0), encoded(tokenizer, 30, seed=1)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    for epoch in (1, 2, 3, 4):
        good.report(0.99, epoch)
    study.tell(good, 0.99)
    trial = study.ask()
    reporter = space.Reporter(trial)
    steps: list[int] = []
    settings = LoopSettings(epochs=4, batch_size=16, lr=1e-7, patience=10)  # learns nothing: far below 0.99

    def on_step(state: Any, _: Any) -> None:
        steps.append(state.step)

    def on_epoch(state: Any, value: float) -> None:
        reporter(state.epoch, value)

    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1"):
        train_classifier(model, train, val, settings, pad_id=0, on_step=on_step, on_epoch=on_epoch)
    assert reporter.pruned_at == 1 and max(steps) == 6  # one epoch of ceil(90 / 16) = 6 steps, of 4 epochs
    assert list(study.trials[1].intermediate_values) == [1]
    # The same trial is not pruned when it keeps up with the others.
    keeping_up = space.Reporter(study.ask())
    for epoch in (1, 2, 3):
        keeping_up(epoch, 0.995)
    assert keeping_up.pruned_at is None


@pytest.mark.parametrize(("name", "cls"), [("median", "MedianPruner"), ("hyperband", "HyperbandPruner")])
def test_pruners_and_samplers_come_from_params(name: str, cls: str) -> None:
    cfg = params_with("minilm-full", {"pruner": name, "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3}}})
    search = cfg.variants["minilm-full"].search
    assert type(space.pruner(search, 3)).__name__ == cls
    assert type(space.sampler(search, 0)).__name__ == "TPESampler"
    assert type(space.sampler(search.model_copy(update={"sampler": "random"}), 0)).__name__ == "RandomSampler"


def test_a_grid_search_through_run_trials_visits_every_point_once(tmp_path: Path) -> None:
    """Trial by trial, as the stage runs it (a fresh sampler per trial, on SQLite): no point twice, none left."""
    from variantlab.io.study import run_trials

    search = {
        "sampler": "grid",
        "trials": None,
        "pruner": "none",
        "space": {
            "C": {"type": "categorical", "choices": [0.1, 1.0, 10.0]},
            "ngram_max": {"type": "int", "low": 1, "high": 3},
            "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
        },
    }
    cfg = params_with("tfidf-logreg", search).variants["tfidf-logreg"].search
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", sampler=space.sampler(cfg, seed=0), direction="maximize"
    )
    outcomes = run_trials(
        study, cfg, lambda t: float(len(str(space.suggest(t, cfg.space)))), label="grid", wait_for_others=True, seed=0
    )
    seen = [tuple(sorted(t.params.items(), key=str)) for t in study.trials]
    assert len(outcomes) == len(seen) == 18 and len(set(seen)) == 18


def test_with_epochs_searched_the_median_pruner_compares_only_runs_of_the_same_length() -> None:
    """Epoch 1 of a 3-epoch run (mid-schedule) is judged against other 3-epoch runs, not against 1-epoch runs
    whose learning rate had fully decayed by then."""
    search = (
        params_with(
            "minilm-lora",
            {
                "startup_trials": 1,
                "space": {
                    "epochs": {"type": "categorical", "choices": [1, 3]},
                    "lr": {"type": "float", "low": 1e-4, "high": 1e-2},
                },
            },
        )
        .variants["minilm-lora"]
        .search
    )
    pruner = space.pruner(search, 3)
    assert isinstance(pruner, space.SameSchedulePruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    epochs = {"epochs": optuna.distributions.CategoricalDistribution([1, 3])}

    def trial(length: int) -> optuna.Trial:
        study.enqueue_trial({"epochs": length})
        return study.ask(epochs)

    short = trial(1)
    short.report(0.9, 1)
    study.tell(short, 0.9)
    long = trial(3)
    long.report(0.5, 1)
    assert not long.should_prune()  # below the 1-epoch run, but there is no 3-epoch run to compare with
    long.report(0.6, 2)
    study.tell(long, 0.7)
    behind = trial(3)
    behind.report(0.4, 1)
    assert behind.should_prune()  # behind the 3-epoch run at epoch 1
    # Without `epochs` in the space, the plain median pruner.
    plain = params_with("minilm-lora", {"space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}})
    assert type(space.pruner(plain.variants["minilm-lora"].search, 3)).__name__ == "MedianPruner"
