"""The README's first command, `bash scripts/dev.sh`, on this machine as a newcomer runs
it: `clrk dev` with its registry, the word-count image built from its Dockerfile on a
debootstrap base (no Docker Hub), pushed, applied, invoked once, its answer printed; then
Ctrl-C stops everything. (Only word-count: the echo-bot would call the real Anthropic.)"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
HANG_GUARD = 1200  # seconds: a fresh machine's first debootstrap takes minutes


def test_dev_sh_prints_the_word_count_answer(tmp_path: Path) -> None:
    home = tmp_path / "clrk"
    env = {**os.environ, "CLRK_HOME": str(home), "CLRK_DEV_EXAMPLES": "word-count"}
    proc = subprocess.Popen(["bash", "scripts/dev.sh", "--registry-port", "0", "--no-tui"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    answer = None
    try:
        deadline = time.monotonic() + HANG_GUARD
        while answer is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no answer:\n" + "".join(seen[-60:])) from None
            assert line is not None, "dev.sh ended:\n" + "".join(seen[-60:])
            seen.append(line)
            if line.startswith("word-count answered: "):
                answer = json.loads(line.removeprefix("word-count answered: "))
        assert answer["word_count"] == 4
        assert any(line.startswith("  registry:   127.0.0.1:") for line in seen), seen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        store = home / "images"
        subprocess.run(["buildah", "--root", str(store / "storage"), "--runroot",
                        str(store / "run"), "rm", "--all"], capture_output=True, check=False)
    rest = []
    while (line := lines.get(timeout=30)) is not None:
        rest.append(line)
    assert "clrk dev stopped" in "".join(seen + rest)
    assert not (home / "registry.addr").exists()  # the registry stopped with it
    leftovers = [line for line in Path("/proc/mounts").read_text().splitlines()
                 if str(home) in line]
    assert not leftovers, leftovers
