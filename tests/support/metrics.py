"""Read the app's /metrics as Prometheus parses it."""

from __future__ import annotations

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families


def samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get(
        "/metrics", headers={"Authorization": "Bearer metrics-secret-token"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
