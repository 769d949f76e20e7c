"""One thin entry point per DVC stage: ``python -m variantlab.stages.<name>``.

A stage command that ``variantlab run`` (or the Prefect flow) starts hands itself to the pipeline's warm
interpreter here, while Python imports this package and before it imports the stage module: the stage modules
import pandas and pydantic (0.5 s a stage) that the warm interpreter has already imported.
"""

from __future__ import annotations

import sys

from variantlab.proc.warm import delegate

if (_status := delegate()) is not None:
    sys.stdout.flush()
    sys.exit(_status)
