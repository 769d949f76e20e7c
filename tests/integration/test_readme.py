"""Every command the README shows is run by a test: here, by a named test, or by `.ci/run` itself.

A command added to the README without saying which test runs it fails `test_every_readme_command_is_run`.
The commands run here that read a pipeline's results (status, history, predict, dvc metrics) run on the checkout
where `make run` just ran (``VARIANTLAB_E2E_PROJECT``, which `.ci/run` sets); without one they are skipped.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO, clean_env, made_run

README = REPO / "README.md"
BIN = Path(sys.executable).parent

# Run by `.ci/run` on a clean clone: the README's two commands.
BY_CI = {"make run", "make test"}

# Run by a test elsewhere in the suite (file::test), servers among them.
BY_TEST = {
    "cp examples/multiclass-topics/params.yaml params.yaml && make run": (
        "tests/integration/test_own_tasks.py::test_eight_topics_with_auto_labels"
    ),
    "make ui": "tests/e2e/test_mlflow_ui.py::ui",  # a server: the browser test's fixture starts `variantlab ui`
    ".venv/bin/variantlab serve-model": (  # a server: `variantlab serve-model` answers predictions and feedback
        "tests/integration/test_prefect_deployments.py::"
        "test_served_predictions_and_feedback_retrain_a_new_champion_that_the_service_switches_to"
    ),
    ".venv/bin/variantlab serve-flows": (  # a server of Prefect deployments: its command line is checked here
        "tests/serving/test_model_server.py::"
        "test_the_two_serve_commands_have_distinct_names_and_the_old_one_still_works"
    ),
    ".venv/bin/variantlab promote --dry-run": "tests/stages/test_promotion_gate.py::promoted",
    ".venv/bin/variantlab promote --online": (  # needs a served shadow and live feedback
        "tests/integration/test_prefect_deployments.py::"
        "test_a_shadow_challenger_labelled_where_it_disagrees_is_promoted_by_the_online_gate_and_served"
    ),
    ".venv/bin/variantlab search minilm-lora --workers 2": (
        "tests/stages/test_search.py::test_two_worker_processes_share_one_study_and_no_trial_runs_twice"
    ),
}

# Run here. The first group needs no pipeline results; the second reads the run `make run` made.
HERE = {
    ".venv/bin/python examples/multiclass-topics/make_topics.py data/external/topics.csv",
    ".venv/bin/variantlab --help",
    "make help",
}
ON_THE_RUN = {
    ".venv/bin/variantlab status",
    ".venv/bin/variantlab history",
    ".venv/bin/dvc metrics show",
    ".venv/bin/variantlab predict models:/variantlab-sentiment@champion in.csv -o out.csv",
}


def readme_commands() -> list[str]:
    """The commands of the README's ```bash blocks: comments dropped, continued lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_every_readme_command_is_run() -> None:
    commands = readme_commands()
    assert len(commands) >= 10, commands
    unknown = [c for c in commands if c not in BY_CI | BY_TEST.keys() | HERE | ON_THE_RUN]
    assert not unknown, f"say which test runs these README commands (tests/integration/test_readme.py): {unknown}"
    stale = sorted((BY_CI | BY_TEST.keys() | HERE | ON_THE_RUN) - set(commands))
    assert not stale, f"no longer in the README: {stale}"
    ci = (REPO / ".ci/run").read_text()
    assert all(re.search(rf"^{re.escape(c)}\b", ci, re.M) for c in BY_CI)
    for command, node in BY_TEST.items():
        path, name = node.split("::")
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), (command, node)


def argv(command: str) -> list[str]:
    """The command with `.venv/bin/` pointing at the interpreter running the tests (CI's .venv, or yours)."""
    return [str(BIN / word.removeprefix(".venv/bin/")) if word.startswith(".venv/bin/") else word
            for word in shlex.split(command)]  # fmt: skip


@pytest.mark.parametrize("command", sorted(HERE))
def test_readme_command_runs(command: str, tmp_path: Path) -> None:
    words = argv(command)
    if "make_topics.py" in command:  # into a scratch file: the repo's data/ stays as it is
        words = [words[0], str(REPO / words[1]), str(tmp_path / "topics.csv")]
    done = subprocess.run(words, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    if "make_topics.py" in command:
        topics = pd.read_csv(tmp_path / "topics.csv")
        assert {"text", "topic"} <= set(topics.columns) and topics["topic"].nunique() == 8


@pytest.mark.parametrize("command", sorted(ON_THE_RUN))
def test_readme_command_runs_on_the_default_run(command: str, tmp_path: Path) -> None:
    project = made_run()
    if project is None:
        pytest.skip("reads the run `make run` made: set VARIANTLAB_E2E_PROJECT to its checkout (.ci/run does)")
    pd.DataFrame({"text": ["What a wonderful, moving film.", "The meeting is on Tuesday."]}).to_csv(
        tmp_path / "in.csv", index=False
    )
    # from a scratch directory, so in.csv and out.csv land there; VARIANTLAB_ROOT names the project
    cwd = project if Path(argv(command)[0]).name == "dvc" else tmp_path
    env = clean_env(VARIANTLAB_ROOT=str(project))
    done = subprocess.run(argv(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    if "predict" in command:
        assert len(pd.read_csv(tmp_path / "out.csv")) == 2
    if command.endswith("history"):
        assert "@champion" in done.stdout
