"""How every entry point reports failure: one clear line and a non-zero exit; a traceback only with --debug."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

from variantlab.errors import VariantlabError


def debug_enabled(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("VARIANTLAB_DEBUG", "") not in ("", "0")


def guarded(name: str, body: Callable[[], int], argv: Sequence[str]) -> int:
    """Run ``body``; turn a VariantlabError into ``<name>: error: <message>`` on stderr."""
    try:
        return body()
    except VariantlabError as exc:
        if debug_enabled(argv):
            traceback.print_exc()
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
