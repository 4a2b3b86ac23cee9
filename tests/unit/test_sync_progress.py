"""``bling sync``'s progress: one live line on a terminal, lines every few requests otherwise."""

from __future__ import annotations

import io

from shopify_app.erp.sync_progress import SyncProgress


def page(rows: int) -> dict[str, list[dict[str, object]]]:
    return {"data": [{"id": n, "codigo": f"S{n}"} for n in range(rows)]}


def feed(progress: SyncProgress, now: list[float]) -> None:
    for _ in range(30):  # 3,000 products at 100 a page, then the empty page
        now[0] += 0.4
        progress.answered("/produtos", page(100))
    progress.answered("/produtos", page(0))
    for _ in range(60):  # one balance request per 50 SKUs
        now[0] += 0.4
        progress.answered("/estoques/saldos/1", {"data": []})


def test_a_terminal_gets_one_line_rewritten_with_the_time_left() -> None:
    out, now = io.StringIO(), [0.0]
    progress = SyncProgress(out, tty=True, requests_per_second=3, clock=lambda: now[0])
    now[0] = 0.0
    feed(progress, now)
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 91 and text.endswith("\n")
    assert "products: 30 page(s) read, 3000 product(s); 12 s elapsed, time left ?" in text
    # Once the catalog is read: 60 balance requests at 3/s are 20 s.
    assert "products: 31 page(s) read, 3000 product(s); 12 s elapsed, time left ~20 s" in text
    assert "balances: 30/60 request(s); 24 s elapsed, time left ~10 s" in text
    assert text.rstrip().endswith("balances: 60/60 request(s); 36 s elapsed, time left ~0 s")


def test_without_a_terminal_a_line_every_ten_requests() -> None:
    out, now = io.StringIO(), [0.0]
    progress = SyncProgress(out, tty=False, requests_per_second=3, clock=lambda: now[0])
    feed(progress, now)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("bling sync products: 10 page(s) read, 1000 product(s)")
    assert any("31 page(s) read, 3000 product(s)" in line for line in lines)  # the catalog's end
    assert lines[-1].startswith("bling sync balances: 60/60 request(s)")
    assert len(lines) < 15
