"""`clrk image build` and `clrk image push` of the word-count example: cold (an empty
store and registry, the base imported first) and cached (the same build again; a push of
what the registry has), then a rebuild after agent.py changed.

The base is `clrk image base` (debootstrap; its root filesystem cached per recipe, so
only the first run on a machine pays for debootstrap). The registry is a docker-registry
on a free loopback port, like `clrk dev`'s.
Run: .venv/bin/python benchmarks/image_build.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLRK = str(ROOT / ".venv" / "bin" / "clrk")
BASE = "clrk/debian-base:bookworm"


def timed(home: Path, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([CLRK, "image", *args, "--data-dir", str(home)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    (root / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: {host}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                return proc, host
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


def one_run(work: Path) -> dict[str, float]:
    home = work / "home"
    reg_proc, host = registry(work)
    context = work / "word-count"
    shutil.copytree(ROOT / "examples" / "word-count", context)
    out: dict[str, float] = {}
    build = ["build", "-q", "-t", "word-count:0.1", "--build-arg", f"BASE={BASE}",
             str(context)]
    try:
        out["base (import of the cached debootstrap rootfs)"] = timed(home, "base", BASE)
        out["build, cold"] = timed(home, *build)
        out["build, cached"] = timed(home, *build)
        out["push, cold"] = timed(home, "push", "-q", "word-count:0.1",
                                  f"{host}/word-count:0.1")
        out["push, cached"] = timed(home, "push", "-q", "word-count:0.1",
                                    f"{host}/word-count:0.1")
        agent = context / "agent.py"
        agent.write_text(agent.read_text() + "\n# changed\n")
        out["rebuild after a change"] = timed(home, *build)
        out["push after a change"] = timed(home, "push", "-q", "word-count:0.1",
                                           f"{host}/word-count:0.1")
    finally:
        reg_proc.terminate()
        reg_proc.wait()
        store = home / "images"
        subprocess.run(["buildah", "--root", str(store / "storage"), "--runroot",
                        str(store / "run"), "rm", "--all"], capture_output=True, check=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clrk-bench-warm-") as warm:
        # The debootstrap cache, outside the timing.
        subprocess.run([CLRK, "image", "base", BASE, "--data-dir", warm], check=True,
                       stdout=subprocess.DEVNULL)
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="clrk-bench-image-") as tmp:
            runs.append(one_run(Path(tmp)))
    print(f"word-count image, {args.runs} runs (seconds: median, min-max)")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key:<48} {statistics.median(values):6.2f}  "
              f"{min(values):.2f}-{max(values):.2f}")


if __name__ == "__main__":
    main()
