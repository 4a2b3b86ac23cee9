"""Real worker processes relay the outbox: work shared, SIGTERM finishes, SIGKILL loses nothing.

Each worker process is this module run as a program (``python -m tests.e2e.test_outbox_workers``):
the app built from the environment only, one test handler registered, then exactly what the
Procfile's ``worker`` runs (``worker_command``, with its SIGTERM handling). The handler writes
each run's start and end to a table, so the test sees every run from outside the processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from shopify_app import outbox
from shopify_app.config import load_settings
from shopify_app.db.engine import make_engine
from shopify_app.migrations_runner import upgrade
from shopify_app.outbox.tables import outbox_jobs
from tests.support.procfile import ProcfileRunner, wait_for

KIND = "e2e.record"
LEASE_SECONDS = 2.0
RUNS_TABLE = "outbox_e2e_runs"


# --- the worker process -----------------------------------------------------------------------


def record_run(runtime: Any, payload: dict[str, Any]) -> None:
    """Test handler: note the start, optionally hang on the first run only, work, note the end."""
    key = payload["key"]
    with runtime.engine.begin() as conn:
        earlier = conn.execute(
            text(f"SELECT count(*) FROM {RUNS_TABLE} WHERE job_key = :k AND phase = 'start'"),  # noqa: S608 - constant table name
            {"k": key},
        ).scalar()
        _note(conn, key, "start")
    if payload.get("hang") and earlier == 0:
        time.sleep(60)  # the test kills this process meanwhile
    time.sleep(payload.get("work", 0))
    with runtime.engine.begin() as conn:
        _note(conn, key, "end")


def _note(conn: Any, key: str, phase: str) -> None:
    conn.execute(
        text(f"INSERT INTO {RUNS_TABLE} (job_key, phase, pid, at) VALUES (:k, :p, :pid, :at)"),  # noqa: S608 - constant table name
        {"k": key, "p": phase, "pid": os.getpid(), "at": time.time()},
    )


def main() -> None:
    from shopify_app import create_app
    from shopify_app.worker import worker_command

    app = create_app()  # DATABASE_URL etc. from the environment, as under the Procfile
    outbox.register(
        KIND, record_run, policy=outbox.JobPolicy(lease_seconds=LEASE_SECONDS, max_attempts=5)
    )
    with app.app_context():
        worker_command.callback()  # type: ignore[misc]


# --- the tests ------------------------------------------------------------------------------------


class Workers:
    def __init__(self, url: str) -> None:
        self.runner = ProcfileRunner(
            {
                "DATABASE_URL": url,
                "APP_ENV": "development",
                "LOG_LEVEL": "INFO",
                "WORKER_OUTBOX_INTERVAL_SECONDS": "0.05",
            }
        )
        self.runner.commands["outbox-worker"] = f"{sys.executable} -m tests.e2e.test_outbox_workers"
        self.engine = make_engine(load_settings({"DATABASE_URL": url}))
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {RUNS_TABLE}"))
            conn.execute(
                text(
                    f"CREATE TABLE {RUNS_TABLE} (job_key VARCHAR(64) NOT NULL, "
                    "phase VARCHAR(8) NOT NULL, pid INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL)"
                )
            )

    def start(self) -> subprocess.Popen[bytes]:
        proc = self.runner.start("outbox-worker")
        started = lambda: "worker started" in self.runner.log_of(proc)  # noqa: E731
        wait_for(started, what="worker start", proc=proc)
        return proc

    def enqueue(self, count: int, **payload: Any) -> None:
        with self.engine.begin() as conn:
            for i in range(count):
                key = f"{payload.get('prefix', 'j')}{i}"
                outbox.enqueue(conn, KIND, key, {"key": key, **payload}, now=datetime.now(UTC))

    def runs(self) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT * FROM {RUNS_TABLE} ORDER BY at")).all()  # noqa: S608 - constant table name

    def jobs(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {r.key: r for r in conn.execute(select(outbox_jobs))}

    def close(self) -> None:
        self.runner.close()
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {RUNS_TABLE}"))
        self.engine.dispose()


@pytest.fixture
def workers(request: pytest.FixtureRequest) -> Iterator[Workers]:
    url = request.getfixturevalue(request.param)
    if url.startswith("sqlite"):
        engine = make_engine(load_settings({"DATABASE_URL": url}))
        upgrade(engine)
        engine.dispose()
    w = Workers(url)
    yield w
    w.close()


@pytest.mark.postgres
@pytest.mark.parametrize("workers", ["postgres_url"], indirect=True)
def test_several_worker_processes_run_each_job_exactly_once(workers: Workers) -> None:
    procs = [workers.start() for _ in range(3)]
    workers.enqueue(60, work=0.05)
    wait_for(lambda: len(workers.runs()) == 120, what="every job's start and end")

    runs = workers.runs()
    assert Counter((r.job_key, r.phase) for r in runs) == Counter(
        {(f"j{i}", phase): 1 for i in range(60) for phase in ("start", "end")}
    ), "each job ran once, start to end"
    assert len({r.pid for r in runs}) >= 2, "the processes shared the work"
    wait_for(
        lambda: {(j.status, j.attempts) for j in workers.jobs().values()} == {("done", 1)},
        what="every job recorded done",
    )
    for proc in procs:
        assert workers.runner.stop(proc) == 0
        assert "worker stopped" in workers.runner.log_of(proc)


@pytest.mark.postgres
@pytest.mark.parametrize("workers", ["postgres_url"], indirect=True)
def test_a_job_of_a_killed_worker_runs_again_after_its_lease(workers: Workers) -> None:
    doomed = workers.start()
    workers.enqueue(1, hang=True)
    wait_for(lambda: len(workers.runs()) == 1, what="the first run to start", proc=doomed)
    os.killpg(doomed.pid, signal.SIGKILL)  # mid-job: its run never ends, nothing is recorded
    doomed.wait(5)

    survivor = workers.start()
    wait_for(lambda: workers.jobs()["j0"].status == "done", what="the job to be done again")
    first, second, end = workers.runs()
    assert (first.phase, first.pid) == ("start", doomed.pid)
    assert (second.phase, second.pid) == ("start", survivor.pid)
    assert (end.phase, end.pid) == ("end", survivor.pid)
    assert second.at - first.at >= LEASE_SECONDS - 0.2, "not before the lease ran out"
    assert workers.jobs()["j0"].attempts == 2
    assert workers.runner.stop(survivor) == 0


@pytest.mark.parametrize(
    "workers",
    ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_sigterm_finishes_the_running_job_and_leaves_the_rest_unclaimed(workers: Workers) -> None:
    proc = workers.start()
    workers.enqueue(3, work=1.0)
    wait_for(lambda: len(workers.runs()) == 1, what="the first job to start", proc=proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(25) == 0, workers.runner.log_of(proc)
    assert time.monotonic() - started < 5
    log = workers.runner.log_of(proc)
    assert "finishing the current job" in log and "worker stopped" in log

    assert [(r.job_key, r.phase) for r in workers.runs()] == [("j0", "start"), ("j0", "end")]
    jobs = workers.jobs()
    assert (jobs["j0"].status, jobs["j0"].attempts) == ("done", 1)
    assert [(jobs[k].status, jobs[k].attempts) for k in ("j1", "j2")] == [("pending", 0)] * 2


if __name__ == "__main__":
    main()
