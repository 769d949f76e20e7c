"""One thin entry point per DVC stage: ``python -m variantlab.stages.<name>``.

A stage command that ``variantlab run`` (or the Prefect flow) starts hands itself to the pipeline's warm
interpreter here, while Python imports this package and before it imports the stage module: the stage modules
import pandas and pydantic (0.5 s a stage) that the warm interpreter has already imported.
"""

from __future__ import annotations

import os
import sys


def _hand_over() -> None:
    from variantlab.proc.warm import CHILD_ENV, SOCKET_ENV, delegate

    argv = list(getattr(sys, "orig_argv", ()))
    if SOCKET_ENV not in os.environ or os.environ.get(CHILD_ENV) or "-m" not in argv:
        return
    module, args = argv[argv.index("-m") + 1], argv[argv.index("-m") + 2 :]
    if not module.startswith(__name__ + "."):
        return
    status = delegate(module, [module, *args])
    if status is not None:
        sys.stdout.flush()
        sys.exit(status)


_hand_over()
