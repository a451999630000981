"""`clrk dev` on a terminal shows the TUI (plain logs with --no-tui, or when stdout is
not a terminal: every other test), and quitting the TUI stops `clrk dev`."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CLRK

pytestmark = pytest.mark.e2e


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, f"{needle!r} never shown: {bytes(seen[-2000:])!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed: the process ended
                return


def test_the_tui_is_the_default_on_a_terminal_and_q_stops_clrk_dev(tmp_path: Path) -> None:
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [CLRK, "--data-dir", str(tmp_path / "clrk"), "dev", "--workers", "0",
         "--no-registry"], stdin=sub, stdout=sub, stderr=sub, start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"})
    os.close(sub)
    seen = bytearray()
    try:
        _read_until(main, b"requests/min", seen)  # the TUI's header
        _read_until(main, b"pools 1", seen)  # with what the API server holds
        assert b"Press Ctrl-C to stop" not in seen  # no plain banner under the TUI
        os.write(main, b"q")
        assert proc.wait(timeout=120) == 0
        _read_until(main, b"clrk dev stopped", seen, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    # Its log went to the data dir, where `clrk dev logs` reads it.
    assert "API server listening" in (tmp_path / "clrk" / "dev.log").read_text()


def test_a_bad_otlp_flag_is_named(tmp_path: Path) -> None:
    r = subprocess.run([CLRK, "--data-dir", str(tmp_path), "dev", "--otlp-forward",
                        "collector:4318"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "--otlp-forward 'collector:4318': give an http:// or https:// URL" in r.stderr
