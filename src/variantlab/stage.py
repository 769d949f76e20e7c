"""``python -m variantlab.stage <name> [args]``: the command of every DVC stage in dvc.yaml.

When ``variantlab run`` or the Prefect flow serves the pipeline from a warm interpreter, the command is handed
to it here, explicitly and before anything heavy is imported (the stage modules import pandas and pydantic,
0.5 s a stage, which the warm interpreter has already imported); otherwise ``variantlab.stages.<name>`` runs
in this process, exactly as ``python -m variantlab.stages.<name>`` does. Importing any variantlab module has no
such effect.
"""

from __future__ import annotations

import runpy
import sys

STAGES = ("ingest", "validate", "prepare", "train", "evaluate", "compare", "promote")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        print(f"variantlab.stage: error: give a stage: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    module = f"variantlab.stages.{argv[0]}"
    from variantlab.proc.warm import delegate

    status = delegate(module, [module, *argv[1:]])
    if status is not None:
        return status
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)  # the stage's main() exits with its status
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    raise SystemExit(status)
