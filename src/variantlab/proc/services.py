"""Local services started on loopback and waited for: a Prefect server (tests, benchmarks, ``infra/local``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

PREFECT_USER = "admin"


class PrefectServer(NamedTuple):
    api: str  # PREFECT_API_URL
    seconds: float  # to healthy
    auth: str  # user:password, what PREFECT_API_AUTH_STRING carries

    def client_env(self) -> dict[str, str]:
        """What a Prefect client, worker or ``variantlab`` process needs to be served."""
        return {"PREFECT_API_URL": self.api, "PREFECT_API_AUTH_STRING": self.auth}


def prefect_auth_string() -> str:
    """A fresh ``user:password`` for Prefect's basic authentication (PREFECT_SERVER_API_AUTH_STRING)."""
    return f"{PREFECT_USER}:{secrets.token_urlsafe(24)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until ``url`` answers 200; fails early if ``proc`` dies."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def prefect_server(home: Path, env: dict[str, str], timeout: float = 240) -> Iterator[PrefectServer]:
    """A fresh server with its own database under ``home`` and authentication on (a new password each time):
    clients need ``PrefectServer.client_env()``. Only /api/health and /api/ready answer without it."""
    port = free_port()
    auth = prefect_auth_string()
    home.mkdir(parents=True, exist_ok=True)
    server_env = {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_API_AUTH_STRING": auth,
    }
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        seconds = wait_http(f"http://127.0.0.1:{port}/api/health", timeout, proc)
        yield PrefectServer(f"http://127.0.0.1:{port}/api", seconds, auth)
    finally:
        stop(proc)
        log.close()
