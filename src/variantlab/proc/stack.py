"""The team stack on one machine, without Docker: the services of ``infra/docker-compose.yml`` from local packages.

* PostgreSQL from Debian's packages (``initdb``/``pg_ctl``; as root, run as the ``postgres`` user),
  one database each for MLflow's tracking store, MLflow's users (basic authentication) and Prefect;
* an S3-compatible object store: moto's server from PyPI (in memory: a stack for trials and tests;
  the compose stack keeps MinIO's objects in a volume), with the bucket created at start;
* ``mlflow server`` on PostgreSQL, artifacts in the bucket served through the server, basic auth on;
* ``prefect server start`` on PostgreSQL, basic auth on (PREFECT_SERVER_API_AUTH_STRING; clients carry
  PREFECT_API_AUTH_STRING from ``stack.env``).

Everything listens on loopback. ``up`` waits until each service answers and records pids, ports and
seconds-to-healthy in ``<state>/stack.json``; ``<state>/stack.env`` holds what a client needs
(``source`` it, or ``variantlab stack env``). Secrets are generated on the first start into
``<state>/secrets.env`` (mode 600) and reused. ``down`` stops the services in reverse order.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from variantlab.errors import VariantlabError
from variantlab.io.files import read_json, write_json
from variantlab.proc.services import free_port, prefect_auth_string, wait_http

BUCKET = "variantlab"
DB_USER = "variantlab"
MLFLOW_ADMIN = "admin"
DATABASES = ("mlflow", "mlflow_auth", "prefect", "optuna", "serving")
SERVICES = ("postgres", "s3", "mlflow", "prefect")
MODEL_SERVER = "model-server"  # optional: `variantlab stack up --serve-model`


class StackError(VariantlabError):
    """A service of the local stack did not start, or the machine lacks what it needs."""


@dataclass
class Ports:
    postgres: int = 5433
    s3: int = 9000
    mlflow: int = 5000
    prefect: int = 4200

    def resolved(self) -> Ports:
        """0 means any free port."""
        return Ports(*(p or free_port() for p in (self.postgres, self.s3, self.mlflow, self.prefect)))


@dataclass
class Stack:
    state: Path
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"

    # ---- files ----
    @property
    def record_file(self) -> Path:
        return self.state / "stack.json"

    @property
    def env_file(self) -> Path:
        return self.state / "stack.env"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.env"

    def pg_data(self) -> Path:
        """PostgreSQL refuses to run as root: then its cluster lives where the ``postgres`` user can reach."""
        if os.geteuid() != 0:
            return self.state / "postgres"
        import hashlib

        tag = hashlib.sha256(str(self.state.resolve()).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"variantlab-pg-{tag}"

    def secrets(self) -> dict[str, str]:
        """Generated on the first start (mode 600) and reused; a key a newer version added is appended."""
        wanted = {
            "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(18),
            "AWS_ACCESS_KEY_ID": lambda: "variantlab",
            "AWS_SECRET_ACCESS_KEY": lambda: secrets.token_urlsafe(24),
            "MLFLOW_TRACKING_PASSWORD": lambda: secrets.token_urlsafe(18),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": lambda: secrets.token_urlsafe(32),
            "PREFECT_AUTH_STRING": prefect_auth_string,
        }
        if not self.secrets_file.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        have = read_env_file(self.secrets_file)
        missing = {k: make() for k, make in wanted.items() if k not in have}
        if missing:
            with self.secrets_file.open("a") as handle:
                handle.writelines(f"{k}={v}\n" for k, v in missing.items())
        return {**have, **missing}

    def record(self) -> dict[str, Any]:
        return dict(read_json(self.record_file)) if self.record_file.exists() else {}

    def client_env(self, ports: Ports) -> dict[str, str]:
        """What a checkout needs to use the stack (tracking, registry, artifacts, DVC remote, Prefect)."""
        s = self.secrets()
        return {
            "MLFLOW_TRACKING_URI": f"http://{self.host}:{ports.mlflow}",
            "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
            "MLFLOW_TRACKING_PASSWORD": s["MLFLOW_TRACKING_PASSWORD"],
            "PREFECT_API_URL": f"http://{self.host}:{ports.prefect}/api",
            "PREFECT_API_AUTH_STRING": s["PREFECT_AUTH_STRING"],
            "AWS_ACCESS_KEY_ID": s["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "VARIANTLAB_S3_ENDPOINT_URL": f"http://{self.host}:{ports.s3}",
            "VARIANTLAB_DVC_REMOTE_URL": f"s3://{BUCKET}/dvc",
            # search workers on any machine share one Optuna study here
            "VARIANTLAB_OPTUNA_STORAGE": (
                f"postgresql+psycopg2://{DB_USER}:{s['POSTGRES_PASSWORD']}@{self.host}:{ports.postgres}/optuna"
            ),
            # the model server's prediction log and feedback (variantlab serve-model, the feedback-to-retrain flow)
            "VARIANTLAB_PREDICTION_LOG": (
                f"postgresql+psycopg2://{DB_USER}:{s['POSTGRES_PASSWORD']}@{self.host}:{ports.postgres}/serving"
            ),
        }

    # ---- lifecycle ----
    def up(self, progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
        """Start every service (those already running are left alone); return seconds to healthy per service."""
        running = self.status()
        if all(running.values()):
            progress(f"stack already running ({self.state})")
            return {}
        if any(running.values()):
            raise StackError(f"part of the stack in {self.state} is running: {running}; run `variantlab stack down`")
        if not self.secrets_file.exists() and self.pg_data().exists() and os.geteuid() == 0:
            shutil.rmtree(self.pg_data())  # a cluster left by a deleted state folder: its password is gone with it
        self.state.mkdir(parents=True, exist_ok=True)
        ports = self.ports.resolved()
        record: dict[str, Any] = {"ports": ports.__dict__, "pids": {}, "seconds": {}, "host": self.host}
        started = time.monotonic()
        try:
            record["seconds"]["postgres"] = self._start_postgres(ports, record, progress)
            record["seconds"]["s3"] = self._start_s3(ports, record, progress)
            with ThreadPoolExecutor(2) as pool:  # both servers spend their start-up importing and migrating
                mlflow_seconds = pool.submit(self._start_mlflow, ports, record, progress)
                prefect_seconds = pool.submit(self._start_prefect, ports, record, progress)
                record["seconds"]["mlflow"] = mlflow_seconds.result()
                record["seconds"]["prefect"] = prefect_seconds.result()
        except BaseException:
            self._write_record(record)
            self.down()
            raise
        record["seconds"]["total"] = round(time.monotonic() - started, 2)
        self._write_record(record)
        write_env_file(self.env_file, self.client_env(ports))
        return dict(record["seconds"])

    def start_model_server(self, project: Path, port: int, progress: Callable[[str], None] = lambda _: None) -> float:
        """``variantlab serve-model`` for ``project`` on the stack (registry, prediction log in its PostgreSQL)."""
        record = self.record()
        running = self.status()
        if not all(running[name] for name in SERVICES):
            raise StackError(f"the stack in {self.state} is not running: start it with `variantlab stack up`")
        pid = record.get("pids", {}).get(MODEL_SERVER)
        if pid and process_alive(pid):
            progress(f"{MODEL_SERVER} already running on {self.host}:{record['ports'][MODEL_SERVER]}")
            return 0.0
        started = time.monotonic()
        port = port or free_port()
        progress(f"{MODEL_SERVER}: variantlab serve-model on {self.host}:{port} for {project}")
        env = {**self.client_env(Ports(**record["ports"])), "VARIANTLAB_ROOT": str(project.resolve())}
        argv = [sys.executable, "-m", "variantlab.cli", "serve-model", "--host", self.host, "--port", str(port)]
        proc = self._spawn(MODEL_SERVER, argv, env, record)
        record.setdefault("ports", {})[MODEL_SERVER] = port
        try:
            wait_http(f"http://{self.host}:{port}/version", 240, proc)  # up; /ping is 200 once a champion loads
        except BaseException:
            _kill_group(proc.pid)
            record["pids"].pop(MODEL_SERVER, None)
            raise
        finally:
            self._write_record(record)
        return round(time.monotonic() - started, 2)

    def down(self) -> list[str]:
        """Stop what runs, newest first; returns the services stopped."""
        record = self.record()
        stopped = []
        server = record.get("pids", {}).get(MODEL_SERVER)
        if server and process_alive(server):
            _kill_group(server)
            stopped.append(MODEL_SERVER)
        for name in reversed(SERVICES):
            pid = record.get("pids", {}).get(name)
            if name == "postgres":
                if (self.pg_data() / "postmaster.pid").exists():
                    self._pg(["pg_ctl", "-D", str(self.pg_data()), "-m", "fast", "-w", "stop"], check=False)
                    stopped.append(name)
            elif pid and process_alive(pid):
                _kill_group(pid)
                stopped.append(name)
        if record:
            record["pids"] = {}
            self._write_record(record)
        return stopped

    def purge(self) -> None:
        """Stop everything and delete the stack's data: the PostgreSQL cluster, secrets, logs."""
        self.down()
        shutil.rmtree(self.pg_data(), ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> dict[str, bool]:
        record = self.record()
        pids = record.get("pids", {})
        out = {name: bool(pids.get(name)) and process_alive(pids[name]) for name in SERVICES if name != "postgres"}
        out["postgres"] = (self.pg_data() / "postmaster.pid").exists() and bool(pids.get("postgres"))
        if MODEL_SERVER in pids:
            out[MODEL_SERVER] = process_alive(pids[MODEL_SERVER])
        return {name: out[name] for name in (*SERVICES, MODEL_SERVER) if name in out}

    # ---- services ----
    def _pg(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = pg_bin(argv[0])
        command = [binary, *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[-800:]
            raise StackError(f"{argv[0]} failed (exit {done.returncode}): {said}")
        return done

    def _start_postgres(self, ports: Ports, record: dict[str, Any], progress: Callable[[str], None]) -> float:
        started = time.monotonic()
        data = self.pg_data()
        password = self.secrets()["POSTGRES_PASSWORD"]
        if not (data / "PG_VERSION").exists():
            progress(f"postgres: initdb {data}")
            data.mkdir(parents=True, exist_ok=True)
            pwfile = data.parent / f".{data.name}.pw"
            pwfile.write_text(password + "\n")
            if os.geteuid() == 0:
                shutil.chown(data, "postgres", "postgres")
                shutil.chown(pwfile, "postgres", "postgres")
            data.chmod(0o700)
            pwfile.chmod(0o600)
            try:
                self._pg(
                    [
                        "initdb",
                        "-D",
                        str(data),
                        "-U",
                        DB_USER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                )
            finally:
                pwfile.unlink(missing_ok=True)
        log = data.parent / f"{data.name}.log" if os.geteuid() == 0 else self.state / "postgres.log"
        if os.geteuid() == 0 and not log.exists():
            log.touch()
            shutil.chown(log, "postgres", "postgres")
        options = f"-p {ports.postgres} -c listen_addresses={self.host} -k {data}"
        progress(f"postgres: starting on {self.host}:{ports.postgres}")
        self._pg(["pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"])
        record["pids"]["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(host=self.host, port=ports.postgres, user=DB_USER, password=password, dbname="postgres")
        ) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cursor.fetchall()}
                for name in DATABASES:
                    if name not in present:
                        cursor.execute(f'CREATE DATABASE "{name}"')
        return round(time.monotonic() - started, 2)

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], record: dict[str, Any]
    ) -> subprocess.Popen[bytes]:
        log = (self.state / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state,
        )
        log.close()
        record["pids"][name] = proc.pid
        return proc

    def _start_s3(self, ports: Ports, record: dict[str, Any], progress: Callable[[str], None]) -> float:
        started = time.monotonic()
        progress(f"s3: moto server on {self.host}:{ports.s3}")
        proc = self._spawn(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(ports.s3)],
            {},
            record,
        )
        wait_http(f"http://{self.host}:{ports.s3}/moto-api/", 60, proc)
        s = self.secrets()
        s3 = s3_client(f"http://{self.host}:{ports.s3}", s["AWS_ACCESS_KEY_ID"], s["AWS_SECRET_ACCESS_KEY"])
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)
        return round(time.monotonic() - started, 2)

    def _start_mlflow(self, ports: Ports, record: dict[str, Any], progress: Callable[[str], None]) -> float:
        started = time.monotonic()
        s = self.secrets()
        pg = f"postgresql+psycopg2://{DB_USER}:{s['POSTGRES_PASSWORD']}@{self.host}:{ports.postgres}"
        auth_ini = self.state / "basic_auth.ini"
        auth_ini.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {pg}/mlflow_auth\nadmin_username = {MLFLOW_ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # PBKDF2 on every request costs ~0.3 s of CPU here; cache a verified credential for a minute
            "auth_cache_ttl_seconds = 60\n"
        )
        auth_ini.chmod(0o600)
        progress(f"mlflow: server on {self.host}:{ports.mlflow} (PostgreSQL, s3://{BUCKET}/mlflow, basic auth)")
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": s["MLFLOW_TRACKING_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": s["MLFLOW_FLASK_SERVER_SECRET_KEY"],
            "MLFLOW_S3_ENDPOINT_URL": f"http://{self.host}:{ports.s3}",
            "AWS_ACCESS_KEY_ID": s["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        proc = self._spawn(
            "mlflow",
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--app-name",
                "basic-auth",
                "--host",
                self.host,
                "--port",
                str(ports.mlflow),
                "--workers",
                "2",
                "--backend-store-uri",
                f"{pg}/mlflow",
                "--artifacts-destination",
                f"s3://{BUCKET}/mlflow",
            ],
            env,
            record,
        )
        wait_http(f"http://{self.host}:{ports.mlflow}/health", 240, proc)
        return round(time.monotonic() - started, 2)

    def _start_prefect(self, ports: Ports, record: dict[str, Any], progress: Callable[[str], None]) -> float:
        started = time.monotonic()
        s = self.secrets()
        progress(f"prefect: server on {self.host}:{ports.prefect} (PostgreSQL)")
        home = self.state / "prefect-home"
        home.mkdir(exist_ok=True)
        env = {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://{DB_USER}:{s['POSTGRES_PASSWORD']}@{self.host}:{ports.postgres}/prefect"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(ports.prefect),
            "PREFECT_SERVER_API_AUTH_STRING": s["PREFECT_AUTH_STRING"],
        }
        proc = self._spawn(
            "prefect",
            [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(ports.prefect)],
            env,
            record,
        )
        wait_http(f"http://{self.host}:{ports.prefect}/api/health", 240, proc)
        return round(time.monotonic() - started, 2)

    def _write_record(self, record: dict[str, Any]) -> None:
        write_json(self.record_file, record)


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise StackError(
            f"{name} not found: install PostgreSQL from Debian (sudo apt-get update && sudo apt-get install -y "
            "postgresql), or run infra/local/install-system-packages.sh"
        )
    return candidates[-1]


def s3_client(endpoint: str, key: str, secret: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1"
    )


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


def write_env_file(path: Path, values: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# written by `variantlab stack up`; `set -a; source` this file to use the stack\n")
        handle.writelines(f"{k}={v}\n" for k, v in values.items())


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child of this process is not alive
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return status != "Z"
    return True


def _kill_group(pid: int, timeout: float = 20) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@contextlib.contextmanager
def running(state: Path, ports: Ports | None = None) -> Iterator[tuple[dict[str, str], dict[str, float]]]:
    """A throw-away stack for the length of a ``with`` block: yields (client env, seconds to healthy)."""
    stack = Stack(state, ports or Ports(0, 0, 0, 0))
    seconds = stack.up()
    try:
        yield read_env_file(stack.env_file), seconds
    finally:
        stack.purge()


def basic_auth_header(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET (an error status is returned, not raised)."""
    import urllib.error

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
