"""dvc.yaml names, for every stage, each variantlab module the stage's code can import (at the top or inside a
function), so that changing one re-runs the stages it feeds and none else: found by walking the imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# The variant kinds' modules are imported by every stage (params.yaml's variants are validated against their
# config models), but their code runs only in train: a stage other than train reaches them through their
# module-level imports alone, not through what their functions import (fit's torch, transformers, loops).
KINDS = "variantlab.variants"
FITS_MODELS = "variantlab.stages.train"


def imported_modules(name: str, *, shallow: tuple[str, ...] = ()) -> set[str]:
    """Every variantlab module ``name`` reaches through its import statements, function bodies included
    (for a module under a ``shallow`` prefix: its module-level statements only)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or (path := module_file(current)) is None:
            continue
        seen.add(current)
        package = current if path.name == "__init__.py" else current.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
        nodes = (n for t in top for n in ast.walk(t)) if current.startswith(shallow) else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("variantlab")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                if base.startswith("variantlab"):
                    todo.append(base)
                    todo += [f"{base}.{a.name}" for a in node.names]  # `from variantlab.io import registry`
    return seen


def stage_modules() -> dict[str, str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"]
        module, *args = cmd.split("-m ", 1)[1].split()
        out[name] = f"variantlab.stages.{args[0]}" if module == "variantlab.stage" else module
    return out


# Plumbing that never changes what a stage computes: how its process starts (the warm interpreter) and how its
# errors are printed. Changing it must not retrain anything. Package markers holding only a docstring
# (and a version string) likewise.
NOT_INPUTS = ("src/variantlab/proc/", "src/variantlab/console.py")


def _only_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr | ast.Assign) and isinstance(n.value, ast.Constant) for n in body)


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    if relative.startswith(NOT_INPUTS) or (path.name == "__init__.py" and _only_docstring(path)):
        return True
    return any(relative == d or relative.startswith(d.rstrip("/") + "/") for d in deps)


def stage_imports(stage: str) -> set[str]:
    module = stage_modules()[stage]
    return imported_modules(module, shallow=() if module == FITS_MODELS else (KINDS,))


@pytest.mark.parametrize("stage", sorted(stage_modules()))
def test_every_imported_module_is_a_dependency(stage: str) -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    deps = (spec.get("do") or spec)["deps"]
    needed = {module_file(m) for m in stage_imports(stage)} - {None}
    missing = sorted(p.relative_to(REPO).as_posix() for p in needed if p is not None and not covered(p, deps))
    assert not missing, f"dvc.yaml stage '{stage}' misses deps: {missing}"


def test_the_plumbing_left_out_changes_no_output() -> None:
    """What NOT_INPUTS leaves out imports nothing that computes: it cannot hide a real dependency."""
    for module in ("variantlab.console", "variantlab.proc.warm"):
        computing = {m for m in imported_modules(module) if m.startswith(("variantlab.core", "variantlab.stages"))}
        assert computing <= {"variantlab.core", "variantlab.core.timing"}, (module, computing)


@pytest.mark.parametrize("stage", sorted(s for s, m in stage_modules().items() if m != FITS_MODELS))
def test_how_a_kind_fits_is_an_input_of_train_alone(stage: str) -> None:
    """Changing a training loop re-runs train (and what its models feed), not ingest or compare."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    deps = set((spec.get("do") or spec)["deps"])
    assert not deps & {"src/variantlab/core/training.py", "src/variantlab/search.py"}, stage
    assert "src/variantlab/variants" in deps, stage  # the kinds' configs: a new kind needs no dvc.yaml edit


def test_the_walk_finds_imports_inside_functions() -> None:
    found = imported_modules("variantlab.stages.train")
    assert {"variantlab.core.training", "variantlab.io.zoo", "variantlab.config"} <= found
