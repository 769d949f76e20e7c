"""What every stage starts from: the project root, its parsed params, and the standard arguments."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from variantlab import paths
from variantlab.config import Params, load_params
from variantlab.core import timing
from variantlab.core.task import Task
from variantlab.io.tracking import project_root


@dataclass(frozen=True)
class StageContext:
    root: Path
    params: Params
    variant: str | None = None

    def path(self, relative: Path) -> Path:
        return self.root / relative

    def task(self) -> Task:
        """The task as prepare froze it (label set included): every stage after prepare reads this one value."""
        import json

        from variantlab.errors import DataError

        file = self.path(paths.TASK)
        if not file.is_file():
            raise DataError("no resolved task; run the prepare stage first", file=str(paths.TASK))
        return Task.from_json(json.loads(file.read_text(encoding="utf-8")))


def parse_stage_args(description: str, argv: Sequence[str] | None, *, variant: bool = False) -> StageContext:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    if variant:
        parser.add_argument("variant", help="variant name, a key of `variants` in params.yaml")
    args = parser.parse_args(argv)
    root = project_root()
    params = load_params(root / args.params if not args.params.is_absolute() else args.params)
    name = getattr(args, "variant", None)
    if name is not None:
        params.variant(name)  # unknown variant: a clear ConfigError before any work
    timing.mark_ready()
    return StageContext(root=root, params=params, variant=name)
