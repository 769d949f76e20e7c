"""A warm interpreter for the pipeline's stages: ``python -m variantlab.stages.<x>`` forks from it instead of
importing mlflow, pandas, torch, transformers, scikit-learn and Great Expectations all over again.

DVC runs every stage as its own process, and a fresh Python spends 2-6 s on imports before a stage does any
work: about a minute over the 16 stages of the default pipeline. ``variantlab run`` (and the Prefect flow) start
one server for the whole pipeline (:func:`serving`). It binds a UNIX socket named in ``VARIANTLAB_WARM_SOCKET`` at
once and then imports the libraries one by one between requests. A stage started by DVC finds the variable and
hands its command over (:func:`delegate`, called as Python imports :mod:`variantlab.stages`, and again by
:func:`variantlab.console.guarded` for a stage started otherwise): the server forks a child
which takes the stage's stdin, stdout and stderr (passed as file descriptors), process group, working directory,
environment and arguments, and runs the stage module as ``__main__``. The stage process waits, forwards SIGTERM and
SIGHUP, and exits with the child's status, so DVC sees what it always saw. The technique of multiprocessing's
forkserver, Android's zygote and Ruby's Spring.

Nothing changes without the variable (plain ``dvc repro``, tests that call ``main()``), when the server cannot
be reached, or when the stage's environment differs from the server's in a variable a library may have read at
import time: the stage then runs in its own process as before. The server never runs a model, starts a thread or
opens a store, so a child starts as clean as a new process; ``random`` reseeds itself in every child.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

SOCKET_ENV = "VARIANTLAB_WARM_SOCKET"
OFF_ENV = "VARIANTLAB_WARM"  # "0" turns the warm server off
CHILD_ENV = "VARIANTLAB_WARM_CHILD"  # set in the stages it runs (the MLflow run's tag variantlab.warm)

# In the order the default pipeline first needs them (ingest, validate, train@tfidf, the encoders, plots).
PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "variantlab.config",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.data.pandas_dataset",
    "psutil",
    "variantlab.io.tracking",
    "variantlab.io.files",
    "variantlab.io.sources",
    "variantlab.stages.context",
    "great_expectations",
    "variantlab.io.validation",
    "variantlab.core.expectations",
    "variantlab.core.preprocessing",
    "variantlab.core.dataset",
    "sklearn.linear_model",
    "sklearn.feature_extraction.text",
    "skops.io",
    "mlflow.pyfunc",
    "mlflow.pyfunc.loaders.code_model",
    "torch",
    "transformers",
    "safetensors.torch",
    # `import transformers` is lazy: loading a BERT imports these (2-3 s, a third of an evaluate stage's overhead)
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.bert.modeling_bert",
    "transformers.models.bert.tokenization_bert",
    "variantlab.core.training",
    "variantlab.io.models",
    "matplotlib.pyplot",
    "scipy.stats",
    "peft",
    # what the stages import inside run(); not the stage modules (they run fresh, as __main__) and not the
    # models-from-code files io/encoder_model.py and io/sklearn_model.py (MLflow executes those on load)
    "variantlab.core.metrics",
    "variantlab.core.behaviour",
    "variantlab.core.leaderboard",
    "variantlab.core.promotion",
    "variantlab.core.statistics",
    "variantlab.core.baseline",
    "variantlab.core.classifier",
    "variantlab.core.embeddings",
    "variantlab.io.plots",
    "variantlab.io.registry",
    "variantlab.io.embedding_cache",
    "variantlab.io.zoo",
    "variantlab.io.checkpoints",
    # "module:function": called once, to fill a cache the stages would each fill again. MLflow maps every
    # installed distribution to its modules before it compares a model's pins with them on load (1 s per
    # evaluate stage, measured with pyinstrument).
    "mlflow.utils.requirements_utils:_init_modules_to_packages_map",
)
# Read at run time by our code or by the libraries, so a stage may differ from the server in them.
# _MLFLOW_ is MLflow's own (the telemetry session id it puts in os.environ once imported, after the server started:
# without it here every stage of a `variantlab run` outside `make`, telemetry on, was refused and ran cold).
_RUNTIME_PREFIXES = ("DVC_", "VARIANTLAB_", "MLFLOW_", "_MLFLOW_", "PREFECT_", "AWS_", "GIT_")
# Set, or unset (PS1, PS2), by the shell DVC runs a stage command with.
_PER_PROCESS = {"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "PS1", "PS2"}


def _import_relevant(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(_RUNTIME_PREFIXES) and k not in _PER_PROCESS}


def env_mismatch(server: Mapping[str, str], stage: Mapping[str, str]) -> str | None:
    """The first variable a library might have read at import time whose value differs, or None."""
    ours, theirs = _import_relevant(server), _import_relevant(stage)
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            return key
    return None


# -- the stage's side -------------------------------------------------------------------------------------------


def _send(sock: socket.socket, message: Mapping[str, object], fds: list[int] | None = None) -> None:
    payload = json.dumps(message).encode()
    header = len(payload).to_bytes(4, "big")
    if fds:
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("warm server closed the connection")
        data += chunk
    return data


_asked: list[bool] = []  # a process asks the server once: a refusal or an unreachable server stands


def delegate(module: str, argv: list[str]) -> int | None:
    """Run stage ``module`` with ``argv`` in a child of the warm server serving this pipeline (``variantlab.stage``
    asks, once per process); the child's exit status, or None to run here (no server, or it refused)."""
    path = os.environ.get(SOCKET_ENV)
    if not path or os.environ.get(OFF_ENV) == "0" or _asked:
        return None
    _asked.append(True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        from variantlab.core.timing import STARTED_ENV, command_started

        env = {**os.environ, STARTED_ENV: str(command_started())}
        request = {"module": module, "argv": argv, "cwd": os.getcwd(), "env": env, "pgid": os.getpgrp()}
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _send(sock, request, [0, 1, 2])
        reply = sock.makefile("r", encoding="utf-8")
        first = reply.readline().split()
    except OSError as exc:
        if os.environ.get("VARIANTLAB_DEBUG"):
            print(f"warm server {path}: {exc}; running in this process", file=sys.stderr)
        sock.close()
        return None
    if not first or first[0] != "pid":  # refused (environment differs) or gone: run here
        if os.environ.get("VARIANTLAB_DEBUG"):
            print(f"warm server: {' '.join(first) or 'no answer'}; running in this process", file=sys.stderr)
        sock.close()
        return None
    pid, same_group = int(first[1]), first[2] == "1"

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    # A terminal's Ctrl-C reaches the child directly when it shares our process group: do not send it twice.
    signal.signal(signal.SIGINT, signal.SIG_IGN if same_group else forward)
    status: list[str] = []
    with contextlib.suppress(OSError):
        for line in reply:
            status = line.split() or status
    sock.close()
    if len(status) == 2 and status[0] == "exit":
        return int(status[1])
    ended = int(status[1]) if len(status) == 2 and status[0] == "signal" else int(signal.SIGKILL)
    signal.signal(ended, signal.SIG_DFL)  # end the way the stage ended, so DVC reports the same
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), ended)
    return 128 + ended


# -- the server's side ------------------------------------------------------------------------------------------


def _rebuild_stdio() -> None:
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        mode = "r" if fd == 0 else "w"
        stream = open(  # noqa: SIM115 - replaces the interpreter's own stream for the rest of the process
            fd,
            mode,
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors="backslashreplace" if fd == 2 else getattr(old, "errors", None),
            buffering=1 if (fd == 2 or os.isatty(fd)) and fd != 0 else -1,
            closefd=False,
        )
        if unbuffered and fd != 0 and isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(write_through=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    import traceback

    traceback.print_exception(exc)
    return 1


def _run_child(conn: socket.socket, fds: list[int], request: dict[str, object]) -> None:
    """In the forked child: become the stage process, run the stage, report its exit code, never return."""
    import atexit
    import runpy

    code = 1
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, int(request["pgid"]))  # type: ignore[call-overload]
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cwd = str(request["cwd"])
        os.chdir(cwd)
        env = dict(request["env"])  # type: ignore[call-overload]
        env.pop(SOCKET_ENV, None)
        env[CHILD_ENV] = "1"
        os.environ.clear()
        os.environ.update(env)
        _rebuild_stdio()
        _end_with_launcher(conn)
        sys.argv = list(request["argv"])  # type: ignore[call-overload]
        sys.path[0] = cwd  # as `python -m` puts it
        try:
            runpy.run_module(str(request["module"]), run_name="__main__", alter_sys=True)
            code = 0
        except BaseException as exc:  # every way out becomes an exit status, as in a real process
            code = _exit_code(exc)
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # MLflow's async logging flush, temp dirs: what interpreter exit would run
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {code}\n".encode())
    finally:
        os._exit(code)


def _end_with_launcher(conn: socket.socket) -> None:
    """SIGTERM this child when the stage process that asked for it dies (``kill -9`` of DVC's child)."""
    import threading

    def watch() -> None:
        with contextlib.suppress(OSError):
            while conn.recv(1):  # the stage process sends nothing more: only its death ends this
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="variantlab-warm-launcher", daemon=True).start()


def serve(path: Path, preload: tuple[str, ...] = PRELOAD) -> None:
    """Listen on ``path``; fork a child per request; import ``preload`` one module at a time while idle (an
    entry ``module:function`` also calls that function).

    Ends when the process that started it is gone, on SIGTERM, or when the socket file is removed.
    """
    import importlib
    import selectors

    parent = os.getppid()
    server_env = dict(os.environ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the stages; the server goes with its parent
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    pending = list(preload)
    while os.getppid() == parent and path.exists():
        events = selector.select(timeout=0 if pending else 0.2)
        for _key, _mask in events:
            conn, _ = listener.accept()
            child = _accept(conn, server_env, pending, [listener, *children.values()])
            if child is not None:
                children[child] = conn
        _reap(children)
        if pending and not events:
            module, _, function = pending.pop(0).partition(":")
            with contextlib.suppress(Exception):
                loaded = importlib.import_module(module)
                if function:
                    getattr(loaded, function)()
    for conn in children.values():
        conn.close()


def _accept(
    conn: socket.socket, server_env: Mapping[str, str], pending: list[str], others: list[socket.socket]
) -> int | None:
    """Answer one connection: a ping, a refusal, or a forked child (``others``: sockets the child must not keep,
    or a stage that ends would wait for one that is still running to let go of its connection)."""
    try:
        conn.settimeout(10)
        header, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
        request = json.loads(_recv_exact(conn, int.from_bytes(header, "big")))
        conn.settimeout(None)
    except (OSError, ValueError):
        conn.close()
        return None
    if request.get("ping"):
        with contextlib.suppress(OSError):
            conn.sendall(f"pending {len(pending)}\n".encode())
        conn.close()
        return None
    if key := env_mismatch(server_env, request["env"]):
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(f"refused env {key}\n".encode())
        conn.close()
        return None
    pid = os.fork()
    if pid == 0:
        for other in others:
            other.close()
        _run_child(conn, fds, request)
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.setpgid(pid, int(request["pgid"]))
    try:
        same_group = os.getpgid(pid) == request["pgid"]
    except ProcessLookupError:
        same_group = False
    with contextlib.suppress(OSError):
        conn.sendall(f"pid {pid} {int(same_group)}\n".encode())
    return pid


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        if os.WIFSIGNALED(status):
            with contextlib.suppress(OSError):
                conn.sendall(f"signal {os.WTERMSIG(status)}\n".encode())
        conn.close()


def pending_imports(path: str) -> int:
    """How many modules the server at ``path`` has still to import (0: fully warm)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        _send(sock, {"ping": True})
        return int(sock.makefile("r", encoding="utf-8").readline().split()[1])


def wait_warm(path: str, timeout: float = 120.0) -> None:
    """Block until the server at ``path`` has imported everything it preloads (benchmarks measure it warm)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if pending_imports(path) == 0:
                return
        except (OSError, IndexError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"warm server {path} still importing after {timeout:.0f} s")
        time.sleep(0.2)


def _listening(path: Path, proc: Any, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return True  # the server drops a connection that sends nothing
            except OSError:
                time.sleep(0.02)
    return False


@contextlib.contextmanager
def serving(root: Path, env: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """A warm server for the block; yields the environment a ``dvc repro`` inside should get.

    ``env`` is the environment the stages will see (the server compares its own against each request).
    Yields ``{}`` when turned off (``VARIANTLAB_WARM=0``) or on a platform without ``fork``.
    """
    import subprocess
    import tempfile

    if os.environ.get(OFF_ENV) == "0" or not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="variantlab-warm-") as tmp:
        path = Path(tmp) / "stages.sock"
        server_env = {**(env or os.environ), SOCKET_ENV: str(path)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "variantlab.proc.warm", str(path)],
            cwd=root,
            env=server_env,
            stdin=subprocess.DEVNULL,
            # Import-time warnings belong to no stage; with VARIANTLAB_DEBUG they show.
            stdout=None if server_env.get("VARIANTLAB_DEBUG") else subprocess.DEVNULL,
            stderr=None if server_env.get("VARIANTLAB_DEBUG") else subprocess.DEVNULL,
        )
        try:
            # Bound within a few hundred ms (before any import); a stage that came first would run cold.
            yield {SOCKET_ENV: str(path)} if _listening(path, proc, timeout=10.0) else {}
        finally:
            path.unlink(missing_ok=True)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
