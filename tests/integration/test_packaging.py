"""The package builds without setuptools warnings and ships what the service needs at run time:
the migrations, the admin pages' templates and static files, the old theme snippet."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WARNINGS = re.compile(r"\w*(?:Deprecation)?Warning: .*|!!", re.MULTILINE)


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_and_carries_the_package_data(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_NO_INPUT": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    backend = [
        line
        for line in WARNINGS.findall(build.stdout + build.stderr)
        if "Location" not in line  # pip's note on a configured local index, not the build's
    ]
    assert backend == [], "\n".join(backend)
    (wheel,) = tmp_path.glob("bazico_stock_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for wanted in [
        "shopify_app/migrations/env.py",
        "shopify_app/migrations/script.py.mako",
        "shopify_app/admin/templates/admin/agora.html",
        "shopify_app/admin/static/admin.js",
        "shopify_app/static/bazico-reserve.js",
    ]:
        assert wanted in names, wanted
    assert not any(name.startswith("tests/") for name in names)
