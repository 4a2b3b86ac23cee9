"""The checkout validation function (extensions/bazico-checkout-validation), built and run as
Shopify runs it.

``build_function()`` runs ``scripts/function build`` (Debian's Rust toolchain, offline) and
returns the ``.wasm``; where the toolchain or the ``wasmtime`` package is missing it skips, unless
REQUIRE_FUNCTION=1 (set by scripts/test, hence CI) makes that a failure.

``run_function()`` runs a built module with wasmtime the way Shopify's function-runner does: a
WASI command module whose export (``cart_validations_generate_run``) is called with the input
JSON on stdin; the output JSON is read from stdout and the logs from stderr. Its
``instructions`` are wasmtime's fuel consumed by the call: the measure function-runner reports
against Shopify's 11,000,000-instruction limit (one unit per Wasm instruction, none for the few
that do no work such as ``nop`` and ``drop``).

``python -m tests.support.shopify_function WASM INPUT.json`` (what ``scripts/function run`` calls)
prints the output JSON on stdout, then the instruction count and the logs on stderr. INPUT.json
is the input query's result, or a fixture of Shopify's templates,
``{"payload": {"export", "target", "input", "output"}}``, whose ``output`` it compares.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "extensions" / "bazico-checkout-validation"
SCRIPT = ROOT / "scripts" / "function"
EXPORT = "cart_validations_generate_run"
TARGET = "cart.validations.generate.run"
REQUIRE_FUNCTION = os.environ.get("REQUIRE_FUNCTION") == "1"
#: Shopify's limits for a cart of up to 200 lines (Shopify/function-runner's constants; the
#: scale factor is 1 up to 200 lines).
INSTRUCTIONS_LIMIT = 11_000_000
INPUT_LIMIT = 128_000
OUTPUT_LIMIT = 20_000
MODULE_SIZE_LIMIT = 256 * 1024
#: Fuel a run starts with: far above the limit, so a run over it is measured, not cut.
STARTING_FUEL = 100 * INSTRUCTIONS_LIMIT
#: What the build needs from Debian (scripts/test installs it).
DEBIAN_PACKAGES = (
    "rustc cargo libstd-rust-dev-wasm32 lld librust-serde-dev librust-serde-derive-dev "
    "librust-serde-json-dev"
)
TOOLCHAIN = (
    Path("/usr/bin/cargo"),
    Path("/usr/bin/rustc"),
    Path("/usr/lib/rustlib/wasm32-wasi"),
    Path("/usr/share/cargo/registry"),
)


def unavailable(reason: str) -> None:
    """Skip, or fail under REQUIRE_FUNCTION=1."""
    if REQUIRE_FUNCTION:
        pytest.fail(f"{reason} and REQUIRE_FUNCTION=1")
    pytest.skip(f"{reason}; REQUIRE_FUNCTION=1 makes this a failure")


def build_function() -> Path:
    """``scripts/function build``: the path of the built module."""
    missing = [str(p) for p in TOOLCHAIN if not p.exists()]
    if missing:
        unavailable(
            f"Debian's Rust toolchain is missing {missing} (apt-get install {DEBIAN_PACKAGES})"
        )
    try:
        import wasmtime  # noqa: F401
    except ImportError:
        unavailable("the wasmtime package is not installed (requirements-test.txt)")
    result = subprocess.run(
        [str(SCRIPT), "build"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"scripts/function build failed:\n{result.stderr}"
    wasm = Path(result.stdout.strip().splitlines()[-1])
    assert wasm.is_file(), result.stdout
    return wasm


@dataclass(frozen=True)
class FunctionRun:
    #: The output JSON, None when stdout is not JSON.
    output: Any
    stdout: bytes
    logs: str
    #: wasmtime fuel consumed by the export: Shopify's "instructions".
    instructions: int
    #: 0 for a normal return; the WASI exit code otherwise.
    exit_code: int


@functools.lru_cache(maxsize=4)
def _compiled(path: str, mtime_ns: int, size: int) -> tuple[Any, Any]:
    import wasmtime

    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    return engine, wasmtime.Module.from_file(engine, path)


def run_function(wasm: Path, input_data: Any, export: str = EXPORT) -> FunctionRun:
    """Call ``export`` of ``wasm`` with ``input_data`` (a JSON-able value, or bytes) on stdin."""
    import wasmtime

    stat = wasm.stat()
    engine, module = _compiled(str(wasm), stat.st_mtime_ns, stat.st_size)
    raw = input_data if isinstance(input_data, bytes) else json.dumps(input_data).encode()
    with tempfile.TemporaryDirectory() as scratch:
        stdin, stdout, stderr = (Path(scratch) / name for name in ("in", "out", "err"))
        stdin.write_bytes(raw)
        wasi = wasmtime.WasiConfig()
        wasi.stdin_file = str(stdin)
        wasi.stdout_file = str(stdout)
        wasi.stderr_file = str(stderr)
        store = wasmtime.Store(engine)
        store.set_wasi(wasi)
        store.set_fuel(STARTING_FUEL)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, module)
        # Instantiating runs no code (no start section), so the fuel counts the export alone.
        func = instance.exports(store)[export]
        assert isinstance(func, wasmtime.Func), f"{export} is not a function"
        exit_code = 0
        try:
            func(store)
        except wasmtime.ExitTrap as exit_trap:
            exit_code = exit_trap.code
        instructions = STARTING_FUEL - store.get_fuel()
        out = stdout.read_bytes()
        logs = stderr.read_text(errors="replace")
    try:
        output = json.loads(out)
    except ValueError:
        output = None
    return FunctionRun(output, out, logs, instructions, exit_code)


@dataclass(frozen=True)
class CartLine:
    """A cart line as the input query reads it: the variant, units and ``_bazico_hold``."""

    variant_gid: str
    quantity: int
    hold: str | None = None
    product: str = "Camiseta Básica"
    title: str = "M"


def cart_input(
    lines: list[CartLine],
    metafield_of: Callable[[str], Any],
    *,
    step: str = "CHECKOUT_COMPLETION",
) -> dict[str, Any]:
    """The input query's result for a cart, as Shopify builds it: each variant's stock
    metafield is ``metafield_of(variant_gid)`` (its JSON value, None when it has none), e.g.
    what the Shopify stand-in stored."""
    built = []
    for line in lines:
        value = metafield_of(line.variant_gid)
        built.append(
            {
                "quantity": line.quantity,
                "attribute": None if line.hold is None else {"value": line.hold},
                "merchandise": {
                    "id": line.variant_gid,
                    "title": line.title,
                    "product": {"title": line.product},
                    "metafield": None if value is None else {"jsonValue": value},
                },
            }
        )
    return {"buyerJourney": {"step": step}, "cart": {"lines": built}}


def fixture_payload(document: Any) -> tuple[Any, Any, str]:
    """(input, expected output or None, export) of an input file or a template fixture."""
    if isinstance(document, dict) and isinstance(document.get("payload"), dict):
        payload = document["payload"]
        return payload["input"], payload.get("output"), payload.get("export", EXPORT)
    return document, None, EXPORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wasm", type=Path)
    parser.add_argument("input", type=Path, help="the input JSON, or a {payload: …} fixture")
    parser.add_argument("--export", help=f"the export to call (default: the fixture's, {EXPORT})")
    args = parser.parse_args(argv)
    input_data, expected, export = fixture_payload(json.loads(args.input.read_text()))
    run = run_function(args.wasm, input_data, args.export or export)
    sys.stdout.write(json.dumps(run.output, indent=2, ensure_ascii=False) + "\n")
    if run.output is None:
        sys.stdout.write(run.stdout.decode(errors="replace") + "\n")
    size = args.wasm.stat().st_size
    print(
        f"instructions: {run.instructions:,} (wasmtime fuel; Shopify's limit "
        f"{INSTRUCTIONS_LIMIT:,})\nmodule: {size:,} bytes (limit {MODULE_SIZE_LIMIT:,})",
        file=sys.stderr,
    )
    if run.logs:
        print(f"logs:\n{run.logs}", file=sys.stderr, end="")
    if run.exit_code:
        print(f"the function exited with code {run.exit_code}", file=sys.stderr)
        return 1
    if expected is not None:
        if run.output != expected:
            print("the output differs from the fixture's payload.output", file=sys.stderr)
            return 1
        print("the output matches the fixture's payload.output", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
