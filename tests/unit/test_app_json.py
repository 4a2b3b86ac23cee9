"""app.json lists every environment variable the service reads (Heroku's deploy form and the
operator's list), except those the platform sets itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Set by Heroku, not by an operator: the Postgres add-on, the router's port, the dyno markers.
PLATFORM = {"DATABASE_URL", "PORT", "DYNO", "CI"}
READS = [
    re.compile(r'r\.(?:str|int|float|rate|switch)\(\s*"([A-Z][A-Z0-9_]+)"'),  # config.py's reader
    re.compile(r'(?:environ\.get|getenv)\(\s*"([A-Z][A-Z0-9_]+)"'),
    re.compile(r'environ\[\s*"([A-Z][A-Z0-9_]+)"\s*\]'),
    re.compile(r'"([A-Z][A-Z0-9_]+)" in env\b'),
]


def variables_read() -> set[str]:
    sources = [ROOT / "gunicorn.conf.py", ROOT / "wsgi.py", *ROOT.glob("shopify_app/**/*.py")]
    found: set[str] = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for pattern in READS:
            found.update(pattern.findall(text))
    return found


def test_app_json_lists_every_variable_the_service_reads() -> None:
    listed = set(json.loads((ROOT / "app.json").read_text(encoding="utf-8"))["env"])
    read = variables_read()
    assert {"SHOPIFY_API_SECRET", "ADMIN_DEV_MODE", "WEB_CONCURRENCY"} <= read  # the scan works
    assert sorted(read - PLATFORM - listed) == [], "add these to app.json's env"
    assert sorted(listed - read) == [], "app.json lists variables nothing reads"
