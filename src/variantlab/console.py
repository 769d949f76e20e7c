"""How every entry point reports failure: one clear line and a non-zero exit; a traceback only with --debug."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from variantlab.errors import VariantlabError


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so ``with`` blocks unwind (MLflow runs end KILLED, temp files go)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def debug_enabled(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("VARIANTLAB_DEBUG", "") not in ("", "0")


# EX_TEMPFAIL from sysexits.h: the orchestrator may retry (a tracking server or object store was unreachable).
TRANSIENT_EXIT = 75
_TRANSIENT_NAMES = {
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "MaxRetryError",
    "NewConnectionError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its cause chain) is a network failure worth retrying."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError) or type(current).__name__ in _TRANSIENT_NAMES:
            return True
        current = current.__cause__ or current.__context__
    return False


def guarded(name: str, body: Callable[[], int], argv: Sequence[str]) -> int:
    """Run ``body``; turn a VariantlabError into ``<name>: error: <message>`` on stderr.

    Network failures exit with :data:`TRANSIENT_EXIT` so the Prefect flow retries them; user errors exit 2 and
    are never retried.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return body()
    except Terminated:
        print(f"{name}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except VariantlabError as exc:
        if debug_enabled(argv):
            traceback.print_exc()
        print(f"{name}: error: {exc}", file=sys.stderr)
        _record_failure(name, f"{name} failed: {exc}", exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_transient(exc):
            raise
        if debug_enabled(argv):
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{name}: transient error (retry later): {first[:300]}", file=sys.stderr)
        _record_failure(name, f"{name} failed (transient, retry later): {first[:300]}", TRANSIENT_EXIT)
        return TRANSIENT_EXIT


def _record_failure(name: str, message: str, exit_code: int) -> None:
    """For the driver of a pipeline (``variantlab.pipeline``): which command failed, why, and with which exit
    code, read from this record rather than from DVC's output. Only inside a project (a dvc.yaml here)."""
    from pathlib import Path

    if Path("dvc.yaml").is_file():
        from variantlab.io.records import command_failed

        command_failed(Path.cwd(), name, message, exit_code)


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
