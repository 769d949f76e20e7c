"""The local stack's secrets: made once (mode 600) and reused; a key a newer version needs (the Prefect server's
auth string) is appended to an older file, never regenerating what is there; clients get it in stack.env."""

from __future__ import annotations

from pathlib import Path

from variantlab.proc.stack import Ports, Stack, read_env_file


def test_secrets_are_made_once_and_an_older_file_gains_the_prefect_auth_string(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "state")
    first = stack.secrets()
    assert oct(stack.secrets_file.stat().st_mode)[-3:] == "600"
    assert first["PREFECT_AUTH_STRING"].startswith("admin:") and stack.secrets() == first

    old = {k: v for k, v in first.items() if k != "PREFECT_AUTH_STRING"}  # what an older version wrote
    stack.secrets_file.write_text("".join(f"{k}={v}\n" for k, v in old.items()))
    upgraded = stack.secrets()
    assert {k: upgraded[k] for k in old} == old  # nothing regenerated: the database password still works
    assert upgraded["PREFECT_AUTH_STRING"] != first["PREFECT_AUTH_STRING"]
    assert read_env_file(stack.secrets_file) == upgraded and stack.secrets() == upgraded

    client = stack.client_env(Ports(5433, 9000, 5000, 4200))
    assert client["PREFECT_API_AUTH_STRING"] == upgraded["PREFECT_AUTH_STRING"]
    assert client["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
