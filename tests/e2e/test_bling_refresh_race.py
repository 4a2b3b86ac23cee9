"""Real OS processes share one Bling connection through PostgreSQL.

The acceptance test: two worker processes and a web process refresh the token at the same moment;
exactly one refresh reaches Bling (the stand-in counts them), and every process goes on with the
new token. Also: a process whose refresh token went stale while it held the lock re-reads the row
instead of declaring the connection lost, and processes sharing the database keep the account
under Bling's 3 requests/second.

Each process is this module run as a program (``python -m tests.e2e.test_bling_refresh_race``):
the app built from the environment only, exactly as the Procfile's processes build it, then
``bling_client(runtime)`` and API calls. A file barrier releases them together. The token
endpoint is made to answer in 300 ms (Bling on a slow day), so racers without the row lock
would overlap at Bling rather than luckily run one after another.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update

from bling.oauth import OAuthClient, StoredToken, TokenManager
from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.erp.tables import bling_connection
from shopify_app.runtime import EXTENSION_KEY, Runtime
from tests.support.bling_connection import decrypted, oauth_environ, raw_row
from tests.support.bling_standin import CLIENT_ID, CLIENT_SECRET, BlingStandIn
from tests.support.procfile import REPO_ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SLOW_TOKEN_ENDPOINT_SECONDS = 0.3


def fingerprint(token: str) -> str:
    """What a process reports instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# --- the process -------------------------------------------------------------------------------


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never appeared")
        time.sleep(0.002)


def main(mode: str, workdir: str, name: str, calls: int) -> None:
    """One racer: ``race`` waits at the barrier; ``stale`` pauses inside its refresh."""
    work = Path(workdir)
    real_refresh = OAuthClient.refresh

    def refresh(self: OAuthClient, refresh_token: str) -> Any:
        if mode == "stale":  # holding the row lock now; the test rotates the token meanwhile
            (work / f"refreshing-{name}").touch()
            _wait_for(work / "resume")
        time.sleep(SLOW_TOKEN_ENDPOINT_SECONDS)
        return real_refresh(self, refresh_token)

    served: list[str] = []
    real_call = TokenManager.__call__

    def provide(self: TokenManager, *, force_refresh: bool = False) -> str:
        token = real_call(self, force_refresh=force_refresh)
        served.append(fingerprint(token))
        return token

    OAuthClient.refresh = refresh  # type: ignore[method-assign]
    TokenManager.__call__ = provide  # type: ignore[method-assign]

    runtime: Runtime = create_app().extensions[EXTENSION_KEY]  # configuration from env only
    with connection.bling_client(runtime) as client:
        (work / f"ready-{name}").touch()
        if mode == "race":
            _wait_for(work / "go")
        started = time.monotonic()
        for _ in range(calls):
            client.get("/produtos", params={"limite": 1})
        print(json.dumps({"name": name, "served": served, "seconds": time.monotonic() - started}))


# --- the tests ----------------------------------------------------------------------------------


@dataclass
class Racer:
    name: str
    proc: subprocess.Popen[str]

    def result(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, f"{self.name} failed:\n{err}"
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report


class Bling:
    """The stand-in, an app connected to it in this process, and racers started against it."""

    def __init__(self, stand_in: BlingStandIn, url: str, workdir: Path) -> None:
        self.stand_in, self.workdir = stand_in, workdir
        self.environ = oauth_environ(url, stand_in.base_url, LOG_LEVEL="WARNING")
        self.runtime: Runtime = create_app(self.environ).extensions[EXTENSION_KEY]
        connection.connect(self.runtime, stand_in.authorize())

    def age_the_token(self) -> None:
        """Near expiry in the store (inside the refresh margin) and already dead at Bling."""
        with self.runtime.engine.begin() as conn:
            soon = datetime.now(UTC) + timedelta(seconds=60)
            conn.execute(update(bling_connection).values(expires_at=soon))
        self.stand_in.expire_access_tokens()

    def start(self, mode: str, name: str, calls: int = 1) -> Racer:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **self.environ}
        command = [sys.executable, "-m", __name__, mode, str(self.workdir), name, str(calls)]
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Racer(name, proc)

    def wait_ready(self, racers: list[Racer]) -> None:
        deadline = time.monotonic() + 60
        for racer in racers:
            while not (self.workdir / f"ready-{racer.name}").exists():
                assert racer.proc.poll() is None, racer.proc.communicate()
                assert time.monotonic() < deadline, f"{racer.name} did not start"
                time.sleep(0.01)

    def stored_fingerprint(self) -> str:
        access, _ = decrypted(self.runtime.engine)
        return fingerprint(access)


@pytest.fixture
def bling(postgres_url: str, tmp_path: Path) -> Iterator[Bling]:
    with BlingStandIn(products=[("BAZI-TEE-P", 5)]) as stand_in:
        setup = Bling(stand_in, postgres_url, tmp_path)
        yield setup
        setup.runtime.engine.dispose()


def test_web_and_two_workers_refreshing_at_once_make_exactly_one_refresh(bling: Bling) -> None:
    before = bling.stored_fingerprint()
    bling.age_the_token()
    racers = [bling.start("race", name) for name in ("web", "worker-1", "worker-2")]
    bling.wait_ready(racers)
    (bling.workdir / "go").touch()  # the barrier: all three leave together
    reports = [racer.result() for racer in racers]

    refresh_requests = (bling.stand_in.refreshes, bling.stand_in.refused_refreshes)
    assert refresh_requests == (1, 0), "exactly one refresh reached Bling, and it succeeded"
    new = bling.stored_fingerprint()
    assert new != before
    for report in reports:  # every process went on with the one new token
        assert set(report["served"]) == {new}, report
    calls = bling.stand_in.calls_to("GET", "/produtos")
    assert [c.status for c in calls] == [200] * 3, "each process's next call succeeded"
    row = raw_row(bling.runtime.engine)
    assert row is not None and row["lost_at"] is None


def test_a_process_whose_refresh_token_went_stale_rereads_the_row(bling: Bling) -> None:
    """While the process holds the row lock, a writer outside the protocol (an older release, a
    script, a re-connect) rotates the token at Bling and queues to store it. The process's refresh
    is refused; it must read the row again and use that token, not declare the connection lost."""
    bling.age_the_token()
    stale = bling.start("stale", "worker-stale")
    _wait_ready_file(bling.workdir / "refreshing-worker-stale", stale)

    _, refresh = decrypted(bling.runtime.engine)
    grant = OAuthClient(CLIENT_ID, CLIENT_SECRET, bling.stand_in.base_url).refresh(refresh)
    rotated = StoredToken.from_grant(grant, datetime.now(UTC))
    store = connection.token_store(bling.runtime)
    writer = threading.Thread(target=lambda: store.update(lambda _current: rotated))
    writer.start()
    _wait_until_blocked_on_a_lock(bling.runtime)
    (bling.workdir / "resume").touch()  # the stale process now spends the dead refresh token
    report = stale.result()
    writer.join(30)

    assert bling.stand_in.refused_refreshes == 1, "the stale refresh was refused ..."
    assert bling.stand_in.refreshes == 1, "... and not followed by a second rotation"
    assert report["served"] == [fingerprint(grant.access_token)], "it used the stored token"
    assert bling.stored_fingerprint() == fingerprint(grant.access_token)
    row = raw_row(bling.runtime.engine)
    assert row is not None and row["lost_at"] is None, "the connection was not declared lost"
    assert [c.status for c in bling.stand_in.calls_to("GET", "/produtos")] == [200]


def test_processes_sharing_the_database_stay_under_three_requests_per_second(
    bling: Bling,
) -> None:
    processes, calls_each = 3, 3
    racers = [bling.start("race", f"worker-{i}", calls_each) for i in range(processes)]
    bling.wait_ready(racers)
    (bling.workdir / "go").touch()
    started = time.monotonic()
    reports = [racer.result() for racer in racers]
    elapsed = time.monotonic() - started

    calls = bling.stand_in.calls_to("GET", "/produtos")
    assert [c.status for c in calls] == [200] * processes * calls_each, "all made progress"
    assert bling.stand_in.rate_violations == 0
    assert bling.stand_in.max_calls_in_any_second <= 3
    assert all(len(r["served"]) == calls_each for r in reports)
    assert elapsed < processes * calls_each * (1 / 3 + 0.05) + 5, elapsed


# --- helpers --------------------------------------------------------------------------------------


def _wait_ready_file(path: Path, racer: Racer) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert racer.proc.poll() is None, racer.proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def _wait_until_blocked_on_a_lock(runtime: Runtime) -> None:
    """Until some session of this database waits on a row lock (the writer, behind the racer)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 30
    while True:
        with runtime.engine.connect() as conn:
            if conn.execute(query).scalar():
                return
        assert time.monotonic() < deadline, "the writer never queued on the row lock"
        time.sleep(0.01)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
