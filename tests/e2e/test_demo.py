"""``scripts/demo`` as a new user runs it: started, the printed curl run twice (200, then 409),
the printed webhook sent, then SIGTERM: no process of it is left and its port is free. Twice,
since each run must start from a fresh demo database.

The first run installs requirements.txt into .venv when that has not been done for these locks
(scripts/demo keeps a stamp); later runs start at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.procfile import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 600  # a first run may install the locked dependencies


def in_session(sid: int) -> list[int]:
    """Processes whose session is ``sid`` (the demo was started as a session leader)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 # gunicorn binds every address
        except OSError:
            return False
    return True


def printed_command(output: str, starts: str) -> str:
    """The command the demo printed that starts with ``starts``, continuation lines joined."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith(starts))
    command = []
    for line in lines[first:]:
        command.append(line.strip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    return " ".join(command)


def run_demo_once(port: int) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    demo = subprocess.Popen(
        ["bash", "scripts/demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(line.decode(errors="replace") for line in demo.stdout),
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ctrl-C stops the service." not in "".join(output):
            assert demo.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        text = "".join(output)
        curl = printed_command(text, "curl -s -X POST")
        answers = []
        for _ in range(2):
            done = subprocess.run(
                ["bash", "-c", curl + " -w '\\n%{http_code}'"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            body, status = done.stdout.rsplit("\n", 1)
            answers.append((int(status), json.loads(body)))
        assert answers[0][0] == 200 and "reservation_id" in answers[0][1], answers
        assert answers[1][0] == 409 and answers[1][1]["error"] == "out_of_stock", answers
        sender = printed_command(text, ".venv/bin/python -m tests.support.shopify_sender")
        sent = subprocess.run(
            ["bash", "-c", sender], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0 and sent.stdout.startswith("200 "), sent.stdout + sent.stderr
        assert re.search(r'"status": ?"applied"', sent.stdout), sent.stdout
    finally:
        demo.send_signal(signal.SIGTERM)  # the script alone, as `kill PID` would
        try:
            demo.wait(40)
        finally:
            leftover = in_session(demo.pid)
            for pid in leftover:
                os.kill(pid, signal.SIGKILL)
            reader.join(10)
            assert demo.stdout is not None
            demo.stdout.close()
    assert demo.returncode == 143, "".join(output)
    deadline = time.monotonic() + 10
    while in_session(demo.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftover == [] and in_session(demo.pid) == [], "".join(output)
    assert port_free(port)


def test_the_demo_answers_200_then_409_each_run_and_leaves_nothing_behind() -> None:
    port = free_port()
    run_demo_once(port)
    run_demo_once(port)
