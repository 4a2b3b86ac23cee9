"""The dependency locks and their audit (scripts/audit_dependencies.py), with PyPI faked.

The fake answers as PyPI answered on this project's build machines: the per-version endpoint
``/pypi/<name>/<version>/json`` 404, the project endpoint ``/pypi/<name>/json`` 200 with the
advisories of the latest release (``ecdsa``'s answer is the real one, shortened).
"""

from __future__ import annotations

import configparser
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
MINERVA = {
    "aliases": ["CVE-2024-23342", "GHSA-wj6h-64fc-37mp"],
    "details": "python-ecdsa has been found to be subject to a Minerva timing attack on the "
    "P-256 curve. The python-ecdsa project considers side channel attacks out of scope for the "
    "project and there is no planned fix.",
    "fixed_in": [],
    "id": "PYSEC-2026-1325",
    "link": "https://osv.dev/vulnerability/PYSEC-2026-1325",
    "source": "osv",
    "summary": None,
    "withdrawn": None,
}
MINERVA_GHSA = {**MINERVA, "id": "GHSA-wj6h-64fc-37mp", "aliases": ["CVE-2024-23342"]}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "audit_dependencies", ROOT / "scripts" / "audit_dependencies.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit = _load()


def _response(url: str, status: int, body: Any = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response._content = json.dumps(body or {}).encode()
    return response


class FakePyPI:
    """Projects by name: (latest version, [versions], vulnerabilities of the latest)."""

    def __init__(self, per_version: bool = False) -> None:
        self.projects: dict[str, tuple[str, list[str], list[dict[str, Any]]]] = {
            "ecdsa": ("0.19.2", ["0.13", "0.19.1", "0.19.2"], [MINERVA, MINERVA_GHSA]),
            "flask": ("3.1.3", ["3.0.0", "3.1.3"], []),
            "oldlib": ("2.0", ["1.0", "2.0"], [{**MINERVA, "id": "PYSEC-X", "aliases": []}]),
        }
        self.per_version = per_version  # True: a network where the per-version endpoint answers
        self.urls: list[str] = []

    def get(self, url: str, **_kwargs: Any) -> requests.Response:
        self.urls.append(url)
        parts = url.removeprefix("https://pypi.org/pypi/").split("/")
        project = self.projects.get(parts[0])
        if project is None:
            return _response(url, 404)
        latest, versions, vulns = project
        if len(parts) == 3:  # name/version/json
            if not self.per_version or parts[1] not in versions:
                return _response(url, 404)
            found = vulns if parts[1] == latest else [{**MINERVA, "id": "PYSEC-OLD"}]
            return _response(url, 200, {"info": {"version": parts[1]}, "vulnerabilities": found})
        body = {"info": {"version": latest}, "releases": {v: [] for v in versions}}
        return _response(url, 200, {**body, "vulnerabilities": vulns})


def _run(pins: list[tuple[str, str]], fake: FakePyPI, **kw: Any) -> tuple[int, str]:
    service, fallback = audit.make_service(fake)
    outcomes = [audit.audit_pin(audit.Pin(n, v, ("lock",)), service, fallback, {}) for n, v in pins]
    canary = audit.check_canary(service, fallback, fake)
    out = io.StringIO()
    status = audit.report(outcomes, [], canary, allow_unaudited=kw.get("allow", False), out=out)
    return status, out.getvalue()


def test_a_known_vulnerable_pin_is_reported_once_per_advisory_and_fails() -> None:
    status, out = _run([("ecdsa", "0.19.2"), ("flask", "3.1.3")], FakePyPI())
    assert status == 1
    assert "VULNERABLE        ecdsa==0.19.2" in out
    assert out.count("CVE-2024-23342") == 1  # PYSEC and GHSA entries are one advisory
    assert "audited clean     flask==3.1.3  [project endpoint" in out
    assert "1 vulnerable" in out and out.rstrip().endswith("FAILED")


def test_a_pin_older_than_the_latest_release_is_not_audited_and_fails_the_audit() -> None:
    status, out = _run([("flask", "3.0.0")], FakePyPI())
    assert status == 1
    assert "NOT AUDITED       flask==3.0.0" in out
    assert "not the latest release (3.1.3)" in out
    assert "0 audited clean" in out and "1 NOT AUDITED" in out

    # Allowed for one run, it is still printed as not audited, never as clean.
    status, out = _run([("flask", "3.0.0")], FakePyPI(), allow=True)
    assert status == 0
    assert "NOT AUDITED       flask==3.0.0" in out and "does NOT show them clean" in out


def test_an_accepted_unaudited_pin_passes_but_is_still_printed_as_not_audited() -> None:
    fake = FakePyPI()
    service, fallback = audit.make_service(fake)
    pins = [audit.Pin("flask", "3.0.0", ()), audit.Pin("oldlib", "1.0", ())]
    reason = "the latest release needs a newer Python than the service runs"
    accepted = {"flask==3.0.0": reason, "oldlib==2.0": reason}
    outcomes = audit.accept(audit.audit_all(pins, service, fallback, {}), accepted)
    out = io.StringIO()
    status = audit.report(outcomes, [], None, allow_unaudited=False, out=out)
    text = out.getvalue()
    assert status == 1  # oldlib 1.0 was not accepted (the entry names another version)
    assert "NOT AUDITED       flask==3.0.0" in text
    assert f"accepted in pyproject.toml: {reason}" in text
    assert "2 NOT AUDITED (1 accepted in pyproject.toml, not clean)" in text
    status = audit.report(outcomes[:1], [], None, allow_unaudited=False, out=io.StringIO())
    assert status == 0


def test_an_unauditable_test_tool_is_printed_but_only_a_shipped_pin_fails() -> None:
    fake = FakePyPI()
    service, fallback = audit.make_service(fake)
    tool = audit.Pin("flask", "3.0.0", ("requirements-test.txt",))
    shipped = audit.Pin("oldlib", "1.0", ("requirements.txt", "requirements-test.txt"))
    tools_only = ["requirements-test.txt"]
    out = io.StringIO()
    outcomes = audit.audit_all([tool], service, fallback, {})
    status = audit.report(outcomes, [], None, allow_unaudited=False, tools_only=tools_only, out=out)
    assert status == 0
    assert "NOT AUDITED       flask==3.0.0" in out.getvalue()
    assert "(1 test-only tools, not shipped, not clean)" in out.getvalue()
    outcomes = audit.audit_all([tool, shipped], service, fallback, {})
    status = audit.report(
        outcomes, [], None, allow_unaudited=False, tools_only=tools_only, out=io.StringIO()
    )
    assert status == 1, "a pin that deploys must be audited"


def test_a_vulnerability_of_an_older_pin_is_found_where_the_per_version_endpoint_answers() -> None:
    status, out = _run([("oldlib", "1.0")], FakePyPI(per_version=True))
    assert status == 1
    assert "VULNERABLE        oldlib==1.0" in out and "PYSEC-OLD" in out


def test_unknown_projects_and_an_unreachable_feed_are_not_audited() -> None:
    class Down(FakePyPI):
        def get(self, url: str, **kwargs: Any) -> requests.Response:
            if "flask" in url:
                raise requests.ConnectionError("name resolution failed")
            return super().get(url, **kwargs)

    status, out = _run([("not-on-pypi", "1.0"), ("flask", "3.1.3")], Down())
    assert status == 1
    assert "NOT AUDITED       not-on-pypi==1.0: not-on-pypi is not a project on PyPI" in out
    assert "NOT AUDITED       flask==3.1.3: the advisory feed could not be read" in out


def test_a_feed_that_is_down_is_not_asked_about_every_pin() -> None:
    class Down(FakePyPI):
        def get(self, url: str, **kwargs: Any) -> requests.Response:
            self.urls.append(url)
            raise requests.ConnectTimeout("timed out")

    fake = Down()
    service, fallback = audit.make_service(fake)
    pins = [audit.Pin(f"p{i}", "1.0", ()) for i in range(10)]
    outcomes = audit.audit_all(pins, service, fallback, {})
    assert [o.status for o in outcomes] == ["unaudited"] * 10
    assert len(fake.urls) == audit.MAX_FEED_FAILURES
    assert outcomes[-1].reason.startswith("not tried: the advisory feed could not be read")


def test_a_feed_that_reports_nothing_fails_the_canary() -> None:
    fake = FakePyPI()
    fake.projects["ecdsa"] = ("0.19.2", ["0.19.2"], [])  # e.g. a proxy that drops advisories
    status, out = _run([("flask", "3.1.3")], fake)
    assert status == 1
    assert "FAILED canary: ecdsa==0.19.2 should be reported vulnerable" in out


def test_an_ignored_advisory_needs_a_reason_and_is_printed(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.dependency-audit.ignore]\n"GHSA-wj6h-64fc-37mp" = "x"\n')
    with pytest.raises(SystemExit, match="needs a reason"):
        audit.load_ignores(pyproject)
    reason = "we never sign with ecdsa; only verify, which is unaffected"
    pyproject.write_text(f'[tool.dependency-audit.ignore]\n"GHSA-wj6h-64fc-37mp" = "{reason}"\n')
    ignores = audit.load_ignores(pyproject)
    service, fallback = audit.make_service(FakePyPI())
    outcome = audit.audit_pin(audit.Pin("ecdsa", "0.19.2", ()), service, fallback, ignores)
    assert outcome.status == "clean" and outcome.ignored[0][1] == reason


def test_only_exact_pins_are_accepted_and_the_project_line_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("Flask==3.1.3\n    # via x\n-e .\n")
    pins, other = audit.read_pins([lock])
    assert pins == [audit.Pin("flask", "3.1.3", ("requirements.txt",))]
    assert other[0][0] == "-e ."
    lock.write_text("flask>=3\n")
    with pytest.raises(SystemExit, match="not pinned"):
        audit.read_pins([lock])


def _lock_pins(name: str) -> dict[str, str]:
    pins, _ = audit.read_pins([ROOT / name])
    return {pin.name: pin.version for pin in pins}


def test_the_locks_agree_with_each_other_and_cover_setup_cfg() -> None:
    runtime, full = _lock_pins("requirements.txt"), _lock_pins("requirements-test.txt")
    assert {name: full.get(name) for name in runtime} == runtime  # one version per package
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    install = config["options"]["install_requires"].split("\n")
    test = config["options.extras_require"]["test"].split("\n")
    for lock, wanted in ((runtime, install), (full, install + test)):
        for line in filter(None, (x.strip() for x in wanted)):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{name} is missing from a lock: run scripts/lock"
            assert requirement.specifier.contains(lock[name]), (name, lock[name])
    assert (ROOT / "requirements.txt").read_text().rstrip().endswith("\n-e .")
