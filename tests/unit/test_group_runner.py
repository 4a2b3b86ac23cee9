"""GroupRunner's hand-over under many threads: every item answered once, by its own batch's
result or exception, with no wake lost and none doubled (a lost wake hangs a request; a doubled
one raises on the bare lock)."""

from __future__ import annotations

import random
import threading

from shopify_app.db.batching import MAX_BATCH, GroupRunner


def _hammer(runner: GroupRunner[int, int], threads: int, per_thread: int) -> list[object]:
    answers: list[object] = []
    guard = threading.Lock()

    def client(base: int) -> None:
        for i in range(per_thread):
            item = base * per_thread + i
            try:
                got: object = runner.submit(item)
            except ValueError as exc:
                got = exc
            with guard:
                answers.append((item, got))

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "a waiter was never woken"
    return answers


def test_every_item_gets_its_own_answer_under_contention() -> None:
    sizes: list[int] = []

    def run_batch(items: list[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        if random.random() < 0.3:
            threading.Event().wait(0.001)
        return [ValueError(item) if item % 7 == 0 else item * 2 for item in items]

    answers = _hammer(GroupRunner(run_batch), threads=24, per_thread=200)
    assert len(answers) == 24 * 200
    for item, got in answers:
        if item % 7 == 0:
            assert isinstance(got, ValueError) and got.args == (item,)
        else:
            assert got == item * 2
    assert max(sizes) <= MAX_BATCH and max(sizes) > 1  # batches formed, within the bound


def test_a_batch_that_raises_answers_all_of_it_and_the_queue_goes_on() -> None:
    def run_batch(items: list[int]) -> list[int | BaseException]:
        if any(item % 5 == 0 for item in items):
            raise ValueError("the whole batch")
        return list(items)

    answers = _hammer(GroupRunner(run_batch), threads=8, per_thread=100)
    assert len(answers) == 800
    assert all(got == item or isinstance(got, ValueError) for item, got in answers)
