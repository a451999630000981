"""The init's exit marker is found across any chunking and never reaches the logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from clrk.worker.sandbox.exit_report import INIT, ExitReport, wrap
from clrk.worker.sandbox.spec import RunSpec


def feed_all(report: ExitReport, chunks: list[bytes]) -> bytes:
    return b"".join(report.feed(c) for c in chunks) + report.flush()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_marker_found_in_any_chunking(size: int) -> None:
    report = ExitReport("0123456789abcdef")
    stream = b"log line\nno newline at the end" + b"clrk-exit-0123456789abcdef 42\n"
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    assert feed_all(report, chunks) == b"log line\nno newline at the end"
    assert report.code == 42


def test_agent_output_that_looks_like_a_start_is_passed_on() -> None:
    report = ExitReport("0123456789abcdef")
    assert feed_all(report, [b"a\nclrk-exit-", b"0123 not it\n", b"\n"]) == \
        b"a\nclrk-exit-0123 not it\n\n"
    assert report.code is None
    # A finished line is never held back (log lines keep their time).
    assert report.feed(b"err-1\n") == b"err-1\n"
    other = ExitReport("0123456789abcdef")
    # Another nonce (an agent guessing) is just output.
    assert feed_all(other, [b"clrk-exit-ffffffffffffffff 0\n"]) == \
        b"clrk-exit-ffffffffffffffff 0\n"
    assert other.code is None


def test_output_after_the_marker_is_the_agents() -> None:
    report = ExitReport("0123456789abcdef")
    assert report.feed(b"x\nclrk-exit-0123456789abcdef 0\nlate") == b"x\nlate"
    assert report.feed(b" child\n") == b" child\n"
    assert report.code == 0


def test_wrap_runs_the_argv_unchanged_under_the_init() -> None:
    spec = RunSpec(Path("/r"), ["python3", "/agent.py"], ["PATH=/bin", "PWD=/w"], "/", 1, 1)
    wrapped, report = wrap(spec, Path("/bin/busybox"))
    assert wrapped.argv[:3] == [INIT, "sh", "-c"] and wrapped.argv[-2:] == spec.argv
    assert report.nonce in wrapped.argv[3]
    # What the shell would add is removed, what the template set is left alone.
    assert wrapped.argv[3].startswith("unset SHLVL OLDPWD;")
    assert (Path("/bin/busybox"), INIT) in wrapped.extra_mounts
