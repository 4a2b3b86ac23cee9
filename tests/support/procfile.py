"""Run the service the way Heroku does: commands from the Procfile, configuration from env only."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile_commands(path: Path = REPO_ROOT / "Procfile") -> dict[str, str]:
    commands = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            commands[name.strip()] = command.strip()
    return commands


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers when ``pid`` is its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; fields resume after its closing parenthesis.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


#: The denial-of-inventory limits off: the races and flows of the other suites send hundreds of
#: requests from one address and hold many units per cart on purpose. The tests of the limits
#: (test_limits.py, e2e/test_abuse.py) set them explicitly.
LIMITS_OFF = {
    "HOLD_MAX_UNITS_PER_SKU": "0",
    "HOLD_MAX_ACTIVE_HOLDS": "0",
    "RATE_LIMIT_PER_IP": "off",
    "RATE_LIMIT_PER_CART": "off",
}


class ProcfileRunner:
    """Starts Procfile process types with a given environment; stops them all on ``close``."""

    def __init__(self, env: dict[str, str]) -> None:
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            **LIMITS_OFF,
            **env,
        }
        self.commands = procfile_commands()
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="bazico-procfile-"))

    def run(self, name: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a one-off process type (``release``) to completion."""
        return subprocess.run(
            ["bash", "-c", self.commands[name]],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
        log = log_path.open("wb")
        # exec, so the Procfile command itself (gunicorn's master) is the process we signal.
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {self.commands[name]}"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append((proc, log_path))
        return proc

    def release_and_serve(self, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
        """Run ``release``, start ``web`` and wait until it answers with ``workers`` workers up
        (gunicorn answers as soon as its first worker is)."""
        release = self.run("release")
        assert release.returncode == 0, release.stdout + release.stderr
        web = self.start("web")
        wait_ready(port, web)
        wait_for(lambda: len(children_of(web.pid)) >= workers, "gunicorn workers", 30, web)
        return web

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        for candidate, path in self.processes:
            if candidate is proc:
                return path.read_text(errors="replace")
        raise KeyError(proc.pid)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 25) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        for proc, _ in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            status, _ = call(port, "GET", "/readyz", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"service on port {port} not ready after {timeout}s")


def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One HTTP request on a fresh connection; returns (status, decoded JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def wait_for(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 20,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` s or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Web:
    """The Procfile's ``web`` serving on ``port``, and an engine on its database."""

    port: int
    engine: Engine
    runner: ProcfileRunner
    proc: subprocess.Popen[bytes]


#: ``serve_web`` with the database made in the session's PostgreSQL cluster: the e2e fixture
#: ``web_on_postgres`` (tests/e2e/conftest.py), called as ``(database_name, env, **kw)``.
WebOnPostgres = Callable[..., contextlib.AbstractContextManager[Web]]


@contextlib.contextmanager
def serve_web(
    database_url: str, env: dict[str, str], *, workers: int = 1, clean_exit: bool = False
) -> Iterator[Web]:
    """Run ``release``, then serve ``web`` on a free port with ``env`` (DATABASE_URL and PORT
    are set here) until it answers with ``workers`` gunicorn workers up; stop everything after.

    ``clean_exit``: when the block ends, SIGTERM must stop ``web`` with status 0 (the tests that
    also check a graceful shutdown); without it the processes are simply killed.
    """
    port = free_port()
    runner = ProcfileRunner({"DATABASE_URL": database_url, "PORT": str(port), **env})
    engine = create_engine(database_url)
    try:
        proc = runner.release_and_serve(port, workers)
        yield Web(port, engine, runner, proc)
        if clean_exit:
            assert runner.stop(proc) == 0, runner.log_of(proc)
    finally:
        runner.close()
        engine.dispose()
