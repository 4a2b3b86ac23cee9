"""The outbox: enqueue in the caller's transaction, the relay's claim/lease/outcomes, the CLI.

Time is a FakeClock and jitter an injected rng, so backoff, leases and pauses are exact.

Long because the relay's outcomes (retry, pause, dead letter, lease take-over) are one state
machine, tested together on one FakeClock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, select

from shopify_app import outbox
from shopify_app.outbox.tables import outbox_jobs, outbox_pauses
from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.stock.tables import skus
from shopify_app.worker import run_worker
from tests.support.clock import FakeClock

FAST = outbox.JobPolicy(backoff_base_seconds=1, backoff_cap_seconds=10, max_attempts=3)


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    return app.extensions[EXTENSION_KEY]


@pytest.fixture
def registry() -> outbox.Registry:
    return outbox.Registry()


class Recorder:
    """A handler that records each run, and fails as told by ``failures`` (a list of outcomes)."""

    def __init__(self, *failures: BaseException | None) -> None:
        self.failures = list(failures)
        self.runs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, _runtime: Runtime, payload: dict[str, Any]) -> None:
        with self.lock:
            self.runs.append(payload)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure


def add(runtime: Runtime, kind: str, key: str, delay: float = 0, **payload: Any) -> bool:
    with runtime.engine.begin() as conn:
        return outbox.enqueue(conn, kind, key, payload, now=runtime.clock(), delay=delay)


def job(engine: Engine, kind: str, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(outbox_jobs).where(outbox_jobs.c.kind == kind, outbox_jobs.c.key == key)
        ).one()


def sku_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(skus.c.sku)).scalars())


def all_jobs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(outbox_jobs).order_by(outbox_jobs.c.id)).all()


# --- enqueue ------------------------------------------------------------------------------------


def test_enqueue_is_idempotent_per_kind_and_key(runtime: Runtime, engine: Engine) -> None:
    assert add(runtime, "bling.forward", "shop:1", order=1, request_id="r-1") is True
    assert add(runtime, "bling.forward", "shop:1", order=999) is False, "same key: no new job"
    assert add(runtime, "other.kind", "shop:1", order=1) is True, "the key is unique per kind"
    rows = all_jobs(engine)
    assert [(r.kind, r.key, r.status, r.attempts) for r in rows] == [
        ("bling.forward", "shop:1", "pending", 0),
        ("other.kind", "shop:1", "pending", 0),
    ]
    assert rows[0].payload == '{"order":1,"request_id":"r-1"}', "the first payload is kept"
    assert rows[0].due_at == runtime.clock()


def test_enqueue_commits_or_rolls_back_with_the_callers_unit_of_work(
    runtime: Runtime, engine: Engine
) -> None:
    with pytest.raises(RuntimeError), runtime.uow() as uow:
        uow.stock.lock_or_create("TEE")
        assert outbox.enqueue(uow, "k", "lost", {}, now=uow.now) is True
        raise RuntimeError("the use case fails after enqueuing")
    with runtime.uow() as uow:
        outbox.enqueue(uow, "k", "not committed", {}, now=uow.now)  # no commit(): rolled back
    assert all_jobs(engine) == []
    assert sku_names(engine) == []

    with runtime.uow() as uow:
        uow.stock.lock_or_create("TEE")
        assert outbox.enqueue(uow, "k", "kept", {"a": 1}, now=uow.now, delay=30) is True
        uow.commit()
    assert [r.key for r in all_jobs(engine)] == ["kept"]
    assert sku_names(engine) == ["TEE"]
    assert job(engine, "k", "kept").due_at == runtime.clock() + timedelta(seconds=30)
    with runtime.uow() as uow:  # a rolled-back twin did not take the key
        assert outbox.enqueue(uow, "k", "lost", {}, now=uow.now) is True


def test_enqueue_refuses_what_it_cannot_store(runtime: Runtime) -> None:
    with runtime.engine.begin() as conn:
        with pytest.raises(TypeError):
            outbox.enqueue(conn, "k", "a", {"when": runtime.clock()}, now=runtime.clock())
        with pytest.raises(TypeError):
            outbox.enqueue(conn, "k", "b", ["not", "a", "dict"], now=runtime.clock())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            outbox.enqueue(object(), "k", "c", {}, now=runtime.clock())  # type: ignore[arg-type]


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_under_a_cap() -> None:
    policy = outbox.JobPolicy(backoff_base_seconds=1, backoff_cap_seconds=600)
    almost_one = 1 - 1e-12
    ceilings = [policy.backoff_seconds(n, lambda: almost_one) for n in range(1, 14)]
    expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]
    assert ceilings == pytest.approx(expected)
    assert policy.backoff_seconds(5, lambda: 0.0) == 0.0
    assert policy.backoff_seconds(5, lambda: 0.5) == 8.0
    assert policy.backoff_seconds(10_000, lambda: 0.5) == 300.0, "no overflow, capped"
    rng = random.Random(7).random
    samples = [policy.backoff_seconds(4, rng) for _ in range(2000)]
    assert all(0 <= s < 8 for s in samples)
    assert min(samples) < 0.5 and max(samples) > 7.5, "jitter spans the whole range"


# --- outcomes -----------------------------------------------------------------------------------


def test_failures_back_off_then_dead_letter_and_the_cli_brings_them_back(
    app: Flask, runtime: Runtime, registry: outbox.Registry, clock: FakeClock, engine: Engine
) -> None:
    handler = Recorder(RuntimeError("boom"), outbox.RetryLater("busy", delay=7), KeyError("x"))
    registry.register("flaky", handler, policy=FAST)
    add(runtime, "flaky", "j1")
    start = clock.now

    assert outbox.run_due(runtime, registry=registry, rng=lambda: 0.5) == 1
    row = job(engine, "flaky", "j1")
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "RuntimeError: boom")
    assert row.due_at == start + timedelta(seconds=0.5), "half of base*2**0"
    assert outbox.run_due(runtime, registry=registry) == 0, "not due before its backoff"

    clock.advance(0.5)
    assert outbox.run_due(runtime, registry=registry, rng=lambda: 0.5) == 1
    row = job(engine, "flaky", "j1")
    assert (row.attempts, row.last_error) == (2, "busy")
    assert row.due_at == clock.now + timedelta(seconds=7), "RetryLater's delay wins"

    clock.advance(7)
    assert outbox.run_due(runtime, registry=registry) == 1
    row = job(engine, "flaky", "j1")
    assert (row.status, row.attempts, row.last_error) == ("dead", 3, "KeyError: 'x'")
    clock.advance(3600)
    assert outbox.run_due(runtime, registry=registry) == 0, "the dead stay dead"
    assert len(handler.runs) == 3

    cli = app.test_cli_runner()
    shown = cli.invoke(args=["outbox", "show"])
    assert shown.exit_code == 0, shown.output
    assert f"#{row.id} flaky key=j1 attempts=3" in shown.output and "KeyError" in shown.output
    assert cli.invoke(args=["outbox", "retry", "999"]).exit_code != 0
    result = cli.invoke(args=["outbox", "retry", str(row.id)])
    assert result.exit_code == 0 and "re-queued 1 dead job(s)" in result.output
    row = job(engine, "flaky", "j1")
    assert (row.status, row.attempts) == ("pending", 0)
    assert cli.invoke(args=["outbox", "retry", str(row.id)]).exit_code != 0, "not dead now"

    assert outbox.run_due(runtime, registry=registry) == 1  # Recorder has no failures left
    row = job(engine, "flaky", "j1")
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    assert row.done_at == clock.now


def test_permanent_failure_dead_letters_at_once_and_retry_all_requeues(
    runtime: Runtime, registry: outbox.Registry, engine: Engine
) -> None:
    registry.register("strict", Recorder(*[outbox.PermanentFailure("rejected")] * 2))
    add(runtime, "strict", "a")
    add(runtime, "strict", "b")
    assert outbox.run_due(runtime, registry=registry) == 2
    assert [(r.status, r.attempts, r.last_error) for r in all_jobs(engine)] == [
        ("dead", 1, "rejected")
    ] * 2
    assert outbox.queue_figures(runtime).total("dead") == 2
    assert outbox.retry_dead(runtime) == 2
    assert outbox.run_due(runtime, registry=registry) == 2
    assert {r.status for r in all_jobs(engine)} == {"done"}


def test_pause_holds_the_whole_kind_and_spends_no_attempts(
    runtime: Runtime, registry: outbox.Registry, clock: FakeClock, engine: Engine
) -> None:
    limited = Recorder(outbox.PauseKind(clock.now + timedelta(hours=1), "daily limit"))
    other = Recorder()
    registry.register("limited", limited)
    registry.register("other", other)
    for key in ("l1", "l2", "l3"):
        add(runtime, "limited", key)
        clock.advance(1)
    add(runtime, "other", "o1")
    before = {r.key: r.due_at for r in all_jobs(engine)}

    assert outbox.run_due(runtime, registry=registry) == 2, "l1 pauses its kind; o1 still runs"
    assert len(limited.runs) == 1 and len(other.runs) == 1
    rows = {r.key: r for r in all_jobs(engine)}
    assert [(rows[k].status, rows[k].attempts) for k in ("l1", "l2", "l3")] == [("pending", 0)] * 3
    assert rows["l1"].due_at == before["l1"], "it keeps its place in line"
    figures = outbox.queue_figures(runtime)
    assert figures.paused["limited"].reason == "daily limit"
    assert figures.kinds["limited"].pending == 3 and figures.kinds["limited"].leased == 0

    clock.advance(3600 - 3 - 1)
    assert outbox.run_due(runtime, registry=registry) == 0, "paused until the hour is over"
    clock.advance(1)
    assert outbox.run_due(runtime, registry=registry) == 3
    assert [(r.key, r.status, r.attempts) for r in all_jobs(engine)] == [
        ("l1", "done", 1),
        ("l2", "done", 1),
        ("l3", "done", 1),
        ("o1", "done", 1),
    ]
    assert len(limited.runs) == 4, "one run that paused, then one per job"


def test_kinds_without_a_handler_wait(
    runtime: Runtime, registry: outbox.Registry, engine: Engine
) -> None:
    add(runtime, "bling.forward", "1")
    assert outbox.run_due(runtime, registry=registry) == 0, "no handler registered at all"
    registry.register("something.else", Recorder())
    assert outbox.run_due(runtime, registry=registry) == 0
    row = job(engine, "bling.forward", "1")
    assert (row.status, row.attempts, row.leased_by) == ("pending", 0, None)
    registry.register("bling.forward", Recorder())
    assert outbox.run_due(runtime, registry=registry) == 1


def test_a_crashed_claim_is_run_again_after_its_lease_and_the_late_outcome_is_dropped(
    runtime: Runtime,
    registry: outbox.Registry,
    clock: FakeClock,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Recorder(RuntimeError("late failure of the first worker"))
    registry.register("k", handler, policy=outbox.JobPolicy(lease_seconds=60))
    add(runtime, "k", "j")
    (crashed,) = outbox.claim(runtime, registry=registry, worker_id="w1")  # then it "dies"
    assert outbox.queue_figures(runtime).kinds["k"].leased == 1
    assert job(engine, "k", "j").leased_by == "w1"
    clock.advance(59)
    assert outbox.run_due(runtime, registry=registry) == 0, "the lease still holds"

    clock.advance(1)
    (second,) = outbox.claim(runtime, registry=registry, worker_id="w2")
    assert second.attempts == 2
    # The first worker comes back late and fails: that must not undo the second's lease.
    caplog.set_level(logging.WARNING, logger="shopify_app.outbox")
    outbox.run_claimed(runtime, crashed, registry=registry)
    assert "outbox.lease_lost" in caplog.text
    row = job(engine, "k", "j")
    assert (row.status, row.attempts, row.leased_by) == ("pending", 2, "w2")
    assert outbox.run_claimed(runtime, second, registry=registry) == "done"
    assert job(engine, "k", "j").status == "done"


def test_queue_figures(runtime: Runtime, registry: outbox.Registry, clock: FakeClock) -> None:
    add(runtime, "a", "1")
    clock.advance(30)
    add(runtime, "a", "2")
    add(runtime, "b", "1", delay=100)
    registry.register("c", Recorder(outbox.PermanentFailure("no")))
    add(runtime, "c", "1")
    outbox.run_due(runtime, registry=registry)
    clock.advance(10)
    figures = outbox.queue_figures(runtime)
    assert figures.kinds["a"] == outbox.KindFigures(pending=2, oldest_pending_age_seconds=40)
    assert figures.kinds["b"].oldest_pending_age_seconds == 10, "age counts from enqueue"
    assert figures.kinds["c"].dead == 1 and figures.kinds["c"].pending == 0
    assert figures.total("pending") == 3 and figures.oldest_pending_age_seconds == 40


# --- concurrency ----------------------------------------------------------------------------------


def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``count`` threads released together by a barrier; re-raise failures."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def test_concurrent_claims_never_hand_out_a_leased_job_twice(
    runtime: Runtime, registry: outbox.Registry, engine: Engine
) -> None:
    registry.register("k", Recorder())
    for i in range(60):
        add(runtime, "k", str(i))
    claimed: list[list[int]] = [[] for _ in range(6)]

    def worker(i: int) -> None:
        while batch := outbox.claim(runtime, registry=registry, worker_id=f"w{i}", limit=4):
            claimed[i].extend(j.id for j in batch)

    in_threads(6, worker)
    ids = [job_id for ids in claimed for job_id in ids]
    assert sorted(ids) == sorted(r.id for r in all_jobs(engine)), "each job claimed exactly once"
    assert {r.attempts for r in all_jobs(engine)} == {1}


def test_concurrent_relays_run_every_job_exactly_once(
    runtime: Runtime, registry: outbox.Registry, engine: Engine
) -> None:
    handler = Recorder()
    registry.register("k", handler)
    for i in range(80):
        add(runtime, "k", str(i), n=i)

    def relay(i: int) -> None:
        while outbox.run_due(runtime, registry=registry, worker_id=f"w{i}", batch=5):
            pass

    in_threads(6, relay)
    assert Counter(p["n"] for p in handler.runs) == Counter(range(80)), "each ran exactly once"
    assert {(r.status, r.attempts) for r in all_jobs(engine)} == {("done", 1)}


# --- the worker loop --------------------------------------------------------------------------


@pytest.fixture
def global_registry() -> Iterator[outbox.Registry]:
    """The registry the worker loop relays from, cleaned of what the test registered."""
    before = outbox.default_registry.kinds()
    yield outbox.default_registry
    for kind in outbox.default_registry.kinds() - before:
        outbox.unregister(kind)


def fast_worker(runtime: Runtime) -> Runtime:
    settings = runtime.settings.__class__(
        **{**runtime.settings.__dict__, "worker_outbox_interval_seconds": 0.05}
    )
    return Runtime(settings, runtime.engine, runtime.clock)


def test_the_worker_drains_the_outbox_and_a_stop_finishes_the_running_job(
    runtime: Runtime, global_registry: outbox.Registry, engine: Engine
) -> None:
    done = Recorder()
    global_registry.register("test.quick", done)
    for i in range(45):
        add(runtime, "test.quick", str(i))
    started, release = threading.Event(), threading.Event()

    def slow(_runtime: Runtime, _payload: dict[str, Any]) -> None:
        started.set()
        assert release.wait(10)

    global_registry.register("test.slow", slow)
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(fast_worker(runtime), stop))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(done.runs) < 45 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(done.runs) == 45, "more than two batches are drained"
        for i in range(3):
            add(runtime, "test.slow", str(i))
        assert started.wait(10)
        stop.set()  # what SIGTERM does, while a job is running
        release.set()
        thread.join(10)
    finally:
        stop.set()
        release.set()
        thread.join(10)
    assert not thread.is_alive()
    slow_rows = [(r.key, r.status, r.attempts, r.leased_by) for r in all_jobs(engine)[45:]]
    assert slow_rows[0][:3] == ("0", "done", 1), "the running job finished and was recorded"
    assert slow_rows[1:] == [("1", "pending", 0, None), ("2", "pending", 0, None)], (
        "the rest are left unclaimed for the next worker"
    )
    assert {r.status for r in all_jobs(engine)[:45]} == {"done"}


def test_pauses_are_stored_per_kind(runtime: Runtime, clock: FakeClock, engine: Engine) -> None:
    with engine.begin() as conn:
        outbox.pause_kind(conn, "k", clock.now + timedelta(minutes=5), "first")
        outbox.pause_kind(conn, "k", clock.now + timedelta(minutes=9), "second")
    with engine.connect() as conn:
        rows = conn.execute(select(outbox_pauses)).all()
    assert [tuple(r) for r in rows] == [("k", clock.now + timedelta(minutes=9), "second")]
    assert outbox.resume_kind(runtime, "k") is True
    assert outbox.resume_kind(runtime, "k") is False
