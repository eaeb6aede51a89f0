"""`transformers serve` on loopback serving the embedded teacher: a real OpenAI-compatible server on the CPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tpt.assets import resolve_model_path


def start_server(timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """`transformers serve` on loopback serving the embedded teacher, once it answers /health: (process, /v1 URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(Path(sys.executable).parent / "transformers"), "serve", "--force_model", str(resolve_model_path("embedded")),
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError("transformers serve exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                raise RuntimeError(f"transformers serve did not answer /health in {timeout:g} s") from None
            time.sleep(0.2)
