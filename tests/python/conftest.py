"""Start the real infercache binary on a loopback port for the client tests.

The binary comes from $INFERCACHE_BIN (scripts/test sets it after
`cargo test` built it); the server is stopped by its PID after the session.
"""
import os
import pathlib
import re
import signal
import subprocess
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "fixtures" / "models"


def start_server(*extra):
    binary = os.environ.get("INFERCACHE_BIN", str(ROOT / "target" / "debug" / "infercache"))
    data = tempfile.mkdtemp(prefix="infercache-pytest-")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    address = None
    for line in proc.stderr:
        match = re.search(r"listening on http://(\S+)", line)
        if match:
            address = match.group(1)
            break
    if address is None:
        proc.kill()
        raise RuntimeError("infercache did not start")
    # Keep draining stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, address


@pytest.fixture(scope="session")
def server():
    models = [f"--model={name}={MODELS / (name + '.onnx')}" for name in ("mlp", "two_io", "dtypes", "fixed", "lookup", "ragged", "heavy")]
    proc, address = start_server(*models)
    yield address
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
