"""Thread pools of processes that share one machine.

torch (OpenMP) and the BLAS libraries size their pools to every core of the machine. Several such processes at
once (``variantlab search --workers N``, pytest-xdist workers) then run N pools of all the cores, and their
spinning barriers slow every one of them: two real-SmolLM2 pipelines side by side on 2 cores took 381 s with a
pool per core and 159 s with one thread each (docs/speed.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads_each(processes: int, cpus: int | None = None) -> int:
    """The threads each of ``processes`` processes gets on ``cpus`` cores (this machine's): at least one."""
    cpus = os.cpu_count() if cpus is None else cpus
    return max(1, (cpus or 1) // max(1, processes))


def shared_env(processes: int, env: Mapping[str, str] | None = None, cpus: int | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) in which each of ``processes`` processes sizes its pools to its
    share of the cores. One process keeps the libraries' own choice; a variable the user set wins."""
    shared = dict(os.environ if env is None else env)
    if processes > 1:
        threads = str(threads_each(processes, cpus))
        for key in POOL_VARIABLES:
            shared.setdefault(key, threads)
    return shared
