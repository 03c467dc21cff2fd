"""Starts the real `myelin` binary on a free 127.0.0.1 port for the interop tests."""
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _binary():
    path = os.environ.get("MYELIN_BIN")
    if path:
        return path
    bin_dir = subprocess.check_output(["swift", "build", "--show-bin-path"], cwd=ROOT, text=True).strip()
    return os.path.join(bin_dir, "myelin")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(config_text):
    """Starts myelin with `config_text` on a free port; yields its base URL; stops it."""
    port = _free_port()
    data = tempfile.mkdtemp(prefix="myelin-interop-")
    config = os.path.join(data, "myelin.yaml")
    with open(config, "w") as f:
        f.write(config_text)
    proc = subprocess.Popen([_binary(), "serve", "--config", config, "--listen", f"127.0.0.1:{port}",
                             "--data-dir", os.path.join(data, "data")])
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("myelin did not start")
    yield base
    proc.terminate()
    assert proc.wait(timeout=15) == 0, "myelin did not exit cleanly on SIGTERM"


@pytest.fixture(scope="session")
def server():
    yield from _start("server_name: interop.test\nlogging:\n  access_log: false\n")


@pytest.fixture(scope="module")
def open_server():
    """A server with rate limits off, for tests that register several users and send a lot."""
    yield from _start("server_name: interop.test\nregistration:\n  enabled: true\nrate_limits:\n  enabled: false\n"
                      "logging:\n  access_log: false\n")
