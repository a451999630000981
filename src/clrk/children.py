"""The one way clrk stops a child process it supervises (Envoy, the dev registry):
SIGTERM, a grace period for it to finish cleanly, then SIGKILL."""

from __future__ import annotations

import asyncio


async def stop(proc: asyncio.subprocess.Process | None, grace: float = 10.0) -> None:
    """Stop ``proc`` (if it still runs) and reap it."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()
