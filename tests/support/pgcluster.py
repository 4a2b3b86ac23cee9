"""Throwaway PostgreSQL clusters for tests and benchmarks.

Standard library only, so that benchmarks and ad-hoc scripts can use it without the test
dependencies, and so that importing it never fails on a machine without psycopg.

Usage::

    with PgCluster() as cluster:
        url = cluster.create_database("stock_test")  # postgresql+psycopg://bazico@127.0.0.1:N/...

Developers can keep one running with ``python -m tests.support.pgcluster``.

Long because it finds PostgreSQL's binaries, runs initdb as an unprivileged user, starts, waits
for and stops a cluster, and creates databases, with the standard library only (see above).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

# A fixed role name keeps URLs identical whether the tests run as root, as a developer or in CI.
SUPERUSER = "bazico"
HOST = "127.0.0.1"

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Binding a probe socket and releasing it is racy; another process may grab the port first.
_START_ATTEMPTS = 3
_START_TIMEOUT_S = 60

# Durability is worthless for a cluster that is deleted after the run; dropping it makes
# schema creation and commits several times faster.
_SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "'128MB'",
}


class PgClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or used."""


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: compare versions numerically so 15 beats 9.6.
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts) or (-1,)


def find_pg_bin() -> Path | None:
    """Return the directory holding initdb, pg_ctl and postgres, or None.

    Looks at $PG_BIN, then the pg_ctl on PATH (symlinks resolved, because Debian only links
    a few tools into PATH), then the highest /usr/lib/postgresql/*/bin.
    """
    env_dir = os.environ.get("PG_BIN")
    if env_dir and _has_binaries(Path(env_dir)):
        return Path(env_dir).resolve()

    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        directory = Path(pg_ctl).resolve().parent
        if _has_binaries(directory):
            return directory

    candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if _has_binaries(d)]
    if candidates:
        return max(candidates, key=_version_key)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    # libpq and pg_ctl honour PGDATA, PGPORT, PGSSLMODE, ...; a developer's settings must not
    # redirect our commands to some other server.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


class PgCluster:
    """A private PostgreSQL server in a temporary directory, removed again by stop()."""

    def __init__(
        self,
        bin_dir: Path | str | None = None,
        base_dir: Path | str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        """``settings``: extra postgresql.conf lines (values quoted as the file wants them),
        e.g. ``{"synchronous_commit": "on"}`` for a test that crashes the server on purpose."""
        self.bin_dir: Path | None = Path(bin_dir) if bin_dir is not None else None
        self.extra_settings = dict(settings or {})
        self.base_dir: Path | str | None = base_dir
        self.user = SUPERUSER
        self.host = HOST
        self.port: int | None = None
        self.root_dir: Path | None = None  # the temp dir; everything else lives inside it
        self.url: str | None = None
        self._switch_user: Callable[[list[str]], list[str]] | None = None
        self._owner: pwd.struct_passwd | None = None

    # -- paths -----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def log_path(self) -> Path:
        return self._root / "server.log"

    @property
    def _root(self) -> Path:
        if self.root_dir is None:
            raise PgClusterError("the cluster has not been started")
        return self.root_dir

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of `database` on this (started) cluster."""
        if self.port is None:
            raise PgClusterError("the cluster has not been started")
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        """Create and start the cluster; return the URL of its `postgres` database."""
        if self.url is not None:
            return self.url
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
        if self.bin_dir is None or not _has_binaries(self.bin_dir):
            raise PgClusterError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
                "install the 'postgresql' package or set PG_BIN"
            )

        self.root_dir = Path(tempfile.mkdtemp(prefix="bazico-pg-", dir=self.base_dir))
        atexit.register(self.stop)
        try:
            self._prepare_owner()
            self._initdb()
            self._configure()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        self.url = self.url_for("postgres")
        return self.url

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its directory. Safe to call twice."""
        atexit.unregister(self.stop)
        root = self.root_dir
        if root is None:
            return
        try:
            if self.bin_dir is not None and (root / "data" / "postmaster.pid").exists():
                # The data is thrown away, so there is nothing to gain from a clean shutdown.
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(root / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                    as_owner=True,
                    check=False,
                )
        finally:
            shutil.rmtree(root, ignore_errors=True)
            self.root_dir = None
            self.url = None
            self.port = None

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data and port, to ``resume`` it later (outage tests).

        ``mode`` is pg_ctl's: ``fast`` (sessions are terminated, clean shutdown) or
        ``immediate`` (no shutdown at all, as in a crash; the next start recovers from the WAL).
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"not a pg_ctl shutdown mode: {mode!r}")
        assert self.bin_dir is not None
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            as_owner=True,
        )

    def resume(self) -> None:
        """Start a server stopped by ``halt`` again, on the same port (same URLs)."""
        assert self.bin_dir is not None and self.port is not None
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                f"-p {self.port}",
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "start",
            ],
            as_owner=True,
        )

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database `name` (a plain identifier) and return its SQLAlchemy URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        if self.port is None:
            raise PgClusterError("the cluster has not been started")
        self._psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def _psql(self, sql: str) -> None:
        psql = self.bin_dir / "psql" if self.bin_dir is not None else None
        if psql is None or not os.access(psql, os.X_OK):
            found = shutil.which("psql")
            if found is None:
                raise PgClusterError("psql not found next to pg_ctl nor on PATH")
            psql = Path(found)
        # TCP with trust auth works for any OS user, so psql needs no user switch even as root.
        self._run(
            [
                str(psql),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            as_owner=False,
        )

    # -- internals -------------------------------------------------------------------------

    def _prepare_owner(self) -> None:
        if os.geteuid() != 0:
            return
        # PostgreSQL refuses to run as root, so the cluster belongs to an unprivileged user.
        for name in ("postgres", "nobody"):
            try:
                self._owner = pwd.getpwnam(name)
                break
            except KeyError:
                continue
        if self._owner is None:
            raise PgClusterError("running as root but neither 'postgres' nor 'nobody' exists")
        self._switch_user = self._user_switcher(self._owner)
        os.chown(self._root, self._owner.pw_uid, self._owner.pw_gid)
        os.chmod(self._root, 0o700)
        probe = self._run(["test", "-w", str(self._root)], as_owner=True, check=False)
        if probe.returncode != 0:
            raise PgClusterError(
                f"user {self._owner.pw_name!r} cannot write {self._root}; a parent directory "
                "is probably private to root; pass a base_dir under /tmp"
            )

    @staticmethod
    def _user_switcher(owner: pwd.struct_passwd) -> Callable[[list[str]], list[str]]:
        runuser = shutil.which("runuser")
        if runuser:
            return lambda cmd: [runuser, "-u", owner.pw_name, "--", *cmd]
        setpriv = shutil.which("setpriv")
        if setpriv:
            return lambda cmd: [
                setpriv,
                f"--reuid={owner.pw_uid}",
                f"--regid={owner.pw_gid}",
                "--init-groups",
                "--",
                *cmd,
            ]
        su = shutil.which("su")
        if su:
            # -s because service accounts such as nobody have a nologin shell.
            return lambda cmd: [su, "-s", "/bin/sh", owner.pw_name, "-c", shlex.join(cmd)]
        raise PgClusterError("running as root but none of runuser, setpriv, su is available")

    def _run(
        self, cmd: list[str], *, as_owner: bool, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        full = self._switch_user(cmd) if as_owner and self._switch_user else cmd
        result = subprocess.run(
            full,
            cwd=self._root,  # root's cwd may be unreadable for the unprivileged owner
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S * 2,
            check=False,
        )
        if check and result.returncode != 0:
            raise PgClusterError(
                f"command failed ({result.returncode}): {shlex.join(full)}\n"
                f"{result.stdout}{result.stderr}\n--- server log tail ---\n{_tail(self.log_path)}"
            )
        return result

    def _initdb(self) -> None:
        assert self.bin_dir is not None
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            as_owner=True,
        )

    def _configure(self) -> None:
        # Appending and truncating keep the files' owner, so no chown is needed as root.
        settings = dict(_SERVER_SETTINGS, unix_socket_directories=f"'{self._root}'")
        settings.update(self.extra_settings)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# bazico throwaway cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        with open(self.data_dir / "pg_hba.conf", "w") as hba:
            hba.write("local all all trust\n")
            hba.write(f"host all all {self.host}/32 trust\n")

    def _start_server(self) -> None:
        assert self.bin_dir is not None
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            result = self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "start",
                ],
                as_owner=True,
                check=False,
            )
            if result.returncode == 0:
                self.port = port
                return
            new_log = ""
            with contextlib.suppress(OSError), open(self.log_path, errors="replace") as log:
                log.seek(log_size)
                new_log = log.read()
            if "already in use" in new_log and attempt < _START_ATTEMPTS:
                continue
            raise PgClusterError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- server log tail ---\n{_tail(self.log_path)}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.pgcluster",
        description="Run a throwaway PostgreSQL cluster until Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "--database", metavar="NAME", help="also create this database and print its URL instead"
    )
    args = parser.parse_args(argv)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM would otherwise kill the interpreter without running the cleanup below, and a
    # shell that starts us in the background (`... &`) leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    cluster = PgCluster()
    try:
        url = cluster.start()
        if args.database:
            url = cluster.create_database(args.database)
        print(f"DATABASE_URL={url}", flush=True)
        print(f"# data in {cluster.root_dir}; Ctrl-C to stop and delete it", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    except PgClusterError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
