"""Audit the locked dependencies (requirements*.txt) against PyPI's advisory feed, with pip-audit.

``pip-audit -r requirements.txt`` asks PyPI about each pin at ``/pypi/<name>/<version>/json``.
Where that per-version endpoint cannot be reached but the project endpoint ``/pypi/<name>/json``
can (the case on this project's build machines), the project endpoint is used instead *only when
the pinned version is the project's latest release*: that endpoint lists the advisories of the
latest release, so for any other pin it proves nothing. Such a pin is reported as NOT AUDITED,
with the reason, and fails the audit: a pin nobody checked is never counted as clean
(``--allow-unaudited`` turns that failure into a printed warning, for a run that says so).
A pin that cannot be audited here and cannot move to the latest release (e.g. the latest needs a
newer Python) may be accepted in ``[tool.dependency-audit.accept-unaudited]`` of pyproject.toml,
keyed ``name==version`` so a changed pin needs a new decision, with the reason; it is still
printed as NOT AUDITED on every run, with that reason, and never counted as clean.

Before the pins, a canary is audited: the latest release of ``ecdsa``, whose maintainers will not
fix CVE-2024-23342 (GHSA-wj6h-64fc-37mp, the Minerva timing attack), so every release of it is
listed as vulnerable. A feed that does not report it is not trusted, and the audit fails, rather
than a silent feed passing every pin as clean.

Advisories that do not apply are ignored only through ``[tool.dependency-audit.ignore]`` in
pyproject.toml, each with its reason; the reason is printed on every run.

Exit status: 0 when every pin was audited and none has an advisory that is not ignored, else 1.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pip_audit._service.interface import (
    ResolvedDependency,
    ServiceError,
    VulnerabilityResult,
)
from pip_audit._service.pypi import PyPIService

PYPI_JSON = "https://pypi.org/pypi"
CANARY = "ecdsa"
DEFAULT_TIMEOUT = 10
#: After this many pins in a row whose audit could not reach the feed, the rest are not tried (a
#: feed that hangs would otherwise cost two timeouts per pin).
MAX_FEED_FAILURES = 3
FEED_FAILURE = "the advisory feed could not be read"
_PER_VERSION_URL = re.compile(re.escape(PYPI_JSON) + r"/([^/]+)/([^/]+)/json")


class Session(Protocol):
    def get(self, url: str, **kwargs: Any) -> requests.Response: ...


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of a lock, and the lock files that list it."""

    name: str
    version: str
    files: tuple[str, ...]


@dataclass
class Outcome:
    pin: Pin
    status: str  # "clean", "vulnerable" or "unaudited"
    vulnerabilities: list[VulnerabilityResult] = field(default_factory=list)
    ignored: list[tuple[VulnerabilityResult, str]] = field(default_factory=list)
    reason: str = ""
    via: str = ""
    accepted: str = ""  # why an unaudited pin does not fail the audit (pyproject.toml)


class LatestReleaseFallback:
    """A session for pip-audit's ``PyPIService``: per-version endpoint first, then the project's.

    When ``/pypi/<name>/<version>/json`` answers 404, the project endpoint is read; if its latest
    release *is* the pinned version, its answer (same schema, same ``vulnerabilities`` list for
    that release) is handed to pip-audit; otherwise the 404 stands and ``notes`` says why.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.notes: dict[tuple[str, str], str] = {}

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        response = self.session.get(url, **kwargs)
        match = _PER_VERSION_URL.fullmatch(url)
        if response.status_code != 404 or match is None:
            if match is not None and response.ok:
                self.notes[match.groups()] = "per-version endpoint"
            return response
        name, version = match.groups()
        project = self.session.get(f"{PYPI_JSON}/{name}/json", **kwargs)
        if project.status_code == 404:
            self.notes[(name, version)] = f"{name} is not a project on PyPI"
            return response
        project.raise_for_status()
        data = project.json()
        latest = str(data.get("info", {}).get("version", ""))
        if _same_version(latest, version):
            self.notes[(name, version)] = "project endpoint (the pin is the latest release)"
            return project
        releases = data.get("releases", {})
        if not any(_same_version(v, version) for v in releases):
            self.notes[(name, version)] = f"{version} is not a release of {name} on PyPI"
        else:
            self.notes[(name, version)] = (
                f"the per-version advisory endpoint answered 404, and {version} is not the latest "
                f"release ({latest}), the only one the project endpoint lists advisories for; "
                "refresh the lock (scripts/lock --upgrade) or audit where that endpoint answers"
            )
        return response


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def read_pins(paths: Sequence[Path]) -> tuple[list[Pin], list[tuple[str, str]]]:
    """Pins of the given lock files, merged, and lines that are not pins (with the reason)."""
    found: dict[tuple[str, str], list[str]] = {}
    other: list[tuple[str, str]] = []
    for path in paths:
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line in (".", "-e .", "--editable .") or line.startswith(("-e ", "--editable ")):
                other.append((line, f"{path.name}: this project's own code (bandit checks it)"))
                continue
            if line.startswith("-"):
                other.append((line, f"{path.name}: a pip option, not a dependency"))
                continue
            try:
                requirement = Requirement(line)
            except InvalidRequirement as exc:
                raise SystemExit(f"{path}: cannot read {line!r}: {exc}") from exc
            specs = list(requirement.specifier)
            if len(specs) != 1 or specs[0].operator not in ("==", "==="):
                raise SystemExit(f"{path}: {line!r} is not pinned with == (not a lock?)")
            key = (canonicalize_name(requirement.name), specs[0].version)
            found.setdefault(key, []).append(path.name)
    pins = [Pin(name, version, tuple(files)) for (name, version), files in sorted(found.items())]
    return pins, other


def load_ignores(pyproject: Path, table_name: str = "ignore") -> dict[str, str]:
    """A table of ``[tool.dependency-audit]``: ``ignore`` (advisory id → why it does not apply)
    or ``accept-unaudited`` (``name==version`` → why that pin may stay unaudited)."""
    if not pyproject.exists():
        return {}
    table = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    entries = table.get("tool", {}).get("dependency-audit", {}).get(table_name, {})
    for key, reason in entries.items():
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise SystemExit(f"pyproject.toml: {table_name} {key} needs a reason")
    return dict(entries)


def accept(outcomes: list[Outcome], accepted: dict[str, str]) -> list[Outcome]:
    """Mark the unaudited pins ``accepted`` names (exactly ``name==version``) with its reason."""
    for outcome in outcomes:
        key = f"{outcome.pin.name}=={outcome.pin.version}"
        if outcome.status == "unaudited" and key in accepted:
            outcome.accepted = accepted[key]
    return outcomes


def make_service(session: Session | None = None) -> tuple[PyPIService, LatestReleaseFallback]:
    service = PyPIService(timeout=DEFAULT_TIMEOUT)
    fallback = LatestReleaseFallback(session if session is not None else service.session)
    service.session = fallback  # type: ignore[assignment]
    return service, fallback


def audit_pin(
    pin: Pin, service: PyPIService, fallback: LatestReleaseFallback, ignores: dict[str, str]
) -> Outcome:
    dependency = ResolvedDependency(name=pin.name, version=Version(pin.version))
    try:
        answered, results = service.query(dependency)
    except (ServiceError, requests.RequestException, ValueError) as exc:
        reason = f"{FEED_FAILURE}: {type(exc).__name__}: {exc}"
        return Outcome(pin, "unaudited", reason=reason)
    note = fallback.notes.get((pin.name, str(Version(pin.version))), "") or fallback.notes.get(
        (pin.name, pin.version), ""
    )
    if answered.is_skipped():
        return Outcome(pin, "unaudited", reason=note or getattr(answered, "skip_reason", ""))
    outcome = Outcome(pin, "clean", via=note)
    merged: list[VulnerabilityResult] = []
    for result in results:  # one advisory under several ids (PYSEC, GHSA) is reported once
        twin = next((i for i, seen in enumerate(merged) if seen.alias_of(result)), None)
        if twin is None:
            merged.append(result)
        else:
            merged[twin] = merged[twin].merge_aliases(result)
    for result in merged:
        reason = next((ignores[i] for i in (result.id, *result.aliases) if i in ignores), None)
        if reason is None:
            outcome.vulnerabilities.append(result)
        else:
            outcome.ignored.append((result, reason))
    if outcome.vulnerabilities:
        outcome.status = "vulnerable"
    return outcome


def audit_all(
    pins: Sequence[Pin],
    service: PyPIService,
    fallback: LatestReleaseFallback,
    ignores: dict[str, str],
) -> list[Outcome]:
    """Every pin's outcome; once the feed fails for several pins in a row, the rest wait."""
    outcomes: list[Outcome] = []
    failures = 0
    for pin in pins:
        if failures >= MAX_FEED_FAILURES:
            reason = f"not tried: {FEED_FAILURE} for {failures} pins in a row"
            outcomes.append(Outcome(pin, "unaudited", reason=reason))
            continue
        outcome = audit_pin(pin, service, fallback, ignores)
        failures = failures + 1 if outcome.reason.startswith(FEED_FAILURE) else 0
        outcomes.append(outcome)
    return outcomes


def check_canary(
    service: PyPIService, fallback: LatestReleaseFallback, session: Session
) -> tuple[bool, str]:
    """Whether the feed reports the advisory every release of the canary has."""
    try:
        response = session.get(f"{PYPI_JSON}/{CANARY}/json", timeout=DEFAULT_TIMEOUT)
        response.raise_for_status()
        latest = str(response.json()["info"]["version"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        return False, f"canary: {CANARY}'s latest release could not be read: {exc}"
    outcome = audit_pin(Pin(CANARY, latest, ()), service, fallback, {})
    if outcome.status != "vulnerable":
        why = outcome.reason or "the feed listed no advisory"
        return False, (
            f"canary: {CANARY}=={latest} should be reported vulnerable (CVE-2024-23342, no fix "
            f"planned) but was {outcome.status}: {why}. The feed cannot be trusted"
        )
    ids = ", ".join(sorted({v.id for v in outcome.vulnerabilities}))
    return True, f"canary: {CANARY}=={latest} reported vulnerable ({ids}): the feed answers"


def _describe(result: VulnerabilityResult) -> str:
    fixes = ", ".join(str(v) for v in result.fix_versions) or "no fixed release"
    aliases = ", ".join(sorted(result.aliases))
    return f"{result.id} ({aliases}; fixed in: {fixes}): {result.description[:160]}"


def report(
    outcomes: Iterable[Outcome],
    other: Sequence[tuple[str, str]],
    canary: tuple[bool, str] | None,
    *,
    allow_unaudited: bool,
    tools_only: Sequence[str] = (),
    out: Any = sys.stdout,
) -> int:
    """Print every pin's outcome and a summary; the exit status."""
    outcomes = list(outcomes)
    by_status: dict[str, list[Outcome]] = {"clean": [], "vulnerable": [], "unaudited": []}
    for outcome in outcomes:
        by_status[outcome.status].append(outcome)

    def say(text: str) -> None:
        print(text, file=out)

    for line, why in other:
        say(f"  not a dependency  {line}  ({why})")
    for outcome in by_status["clean"]:
        pin = outcome.pin
        say(f"  audited clean     {pin.name}=={pin.version}  [{outcome.via}]")
        for result, reason in outcome.ignored:
            say(f"    ignored {result.id}: {reason}")
    for outcome in by_status["vulnerable"]:
        pin = outcome.pin
        say(f"  VULNERABLE        {pin.name}=={pin.version}  ({', '.join(pin.files)})")
        for result in outcome.vulnerabilities:
            say(f"    {_describe(result)}")
        for result, reason in outcome.ignored:
            say(f"    ignored {result.id}: {reason}")
    for outcome in by_status["unaudited"]:
        pin = outcome.pin
        say(f"  NOT AUDITED       {pin.name}=={pin.version}: {outcome.reason}")
        if outcome.accepted:
            say(f"    accepted in pyproject.toml: {outcome.accepted}")
    if canary is not None:
        say(("  " if canary[0] else "  FAILED ") + canary[1])

    clean, vulnerable, unaudited = (len(by_status[k]) for k in ("clean", "vulnerable", "unaudited"))
    failed = bool(vulnerable) or (canary is not None and not canary[0])
    summary = (
        f"dependency audit: {len(outcomes)} pins, {clean} audited clean, "
        f"{vulnerable} vulnerable, {unaudited} NOT AUDITED"
    )
    # Test and check tools (pins only in a ``tools_only`` lock) never ship: one this network cannot
    # audit is printed as NOT AUDITED but does not fail the run, since such tools release often
    # and only their latest release is auditable here. Shipped pins must all be audited.
    tools = [
        o for o in by_status["unaudited"] if o.pin.files and set(o.pin.files) <= set(tools_only)
    ]
    refused = [o for o in by_status["unaudited"] if not o.accepted and o not in tools]
    accepted = unaudited - len(refused) - len([o for o in tools if not o.accepted])
    if accepted:
        summary += f" ({accepted} accepted in pyproject.toml, not clean)"
    if tools:
        summary += f" ({len(tools)} test-only tools, not shipped, not clean)"
    if refused and not allow_unaudited:
        failed = True
        summary += " (a pin that was not audited is not clean)"
    elif refused:
        summary += " (allowed by --allow-unaudited: this run does NOT show them clean)"
    say(summary + (": FAILED" if failed else ": passed"))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="+", type=Path, help="requirements files with == pins")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--allow-unaudited", action="store_true")
    parser.add_argument("--no-canary", action="store_true")
    parser.add_argument(
        "--tools-lock",
        action="append",
        default=[],
        help="a lock of test/check tools: its pins that are in no other lock may stay unaudited",
    )
    args = parser.parse_args(argv)

    pins, other = read_pins(args.locks)
    ignores = load_ignores(args.pyproject)
    service, fallback = make_service()
    print(f"auditing {len(pins)} pins of {', '.join(str(p) for p in args.locks)}")
    canary = None if args.no_canary else check_canary(service, fallback, fallback.session)
    outcomes = accept(
        audit_all(pins, service, fallback, ignores),
        load_ignores(args.pyproject, "accept-unaudited"),
    )
    return report(
        outcomes,
        other,
        canary,
        allow_unaudited=args.allow_unaudited,
        tools_only=[Path(p).name for p in args.tools_lock],
    )


if __name__ == "__main__":
    sys.exit(main())
