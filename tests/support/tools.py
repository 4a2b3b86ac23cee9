"""Command-line tools the tests run (promtool, amtool): found, or a skip, or a failure in CI.

They come from Debian's ``prometheus`` and ``prometheus-alertmanager`` packages; where they are
missing the test skips, unless REQUIRE_PROMTOOLS=1 (set by scripts/test, hence CI) makes that a
failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_PROMTOOLS = os.environ.get("REQUIRE_PROMTOOLS") == "1"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None and os.access(f"/usr/bin/{name}", os.X_OK):
        found = f"/usr/bin/{name}"
    if found is None:
        message = f"{name} not found (Debian: apt-get install prometheus prometheus-alertmanager)"
        if REQUIRE_PROMTOOLS:
            pytest.fail(f"{message} and REQUIRE_PROMTOOLS=1")
        pytest.skip(f"{message}; REQUIRE_PROMTOOLS=1 makes this a failure")
    return found
