"""The OCI runtime bundle (config.json) runsc runs: locked down by default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clrk.worker.sandbox.spec import RunSpec

CAPABILITIES = ["CAP_NET_BIND_SERVICE"]
# Where images keep their trusted roots (Debian/Ubuntu/Alpine, RHEL, Alpine/BSD, SUSE).
CA_PATHS = ("etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt",
            "etc/ssl/cert.pem", "etc/ssl/ca-bundle.pem")
CERTIFI = ("usr/lib/python3*/*-packages/certifi/cacert.pem",
           "usr/local/lib/python3*/*-packages/certifi/cacert.pem",
           "opt/*/lib/python3*/site-packages/certifi/cacert.pem")


def ca_paths(rootfs: Path) -> list[str]:
    """Every CA bundle the image has (plus the Debian path the CA variables name)."""
    found = {CA_PATHS[0]}
    found.update(p for p in CA_PATHS if (rootfs / p).is_file())
    for pattern in CERTIFI:
        found.update(str(p.relative_to(rootfs)) for p in rootfs.glob(pattern) if p.is_file())
    return sorted(found)


def ca_bundle(rootfs: Path, extra: bytes) -> bytes:
    """The image's own roots (so TLS that is not intercepted still verifies) and ours."""
    own = next(((rootfs / p).read_bytes() for p in CA_PATHS if (rootfs / p).is_file()), b"")
    return own.rstrip(b"\n") + b"\n" + extra if own else extra
CPU_PERIOD = 100_000


def config(spec: RunSpec, cgroup: str, directory: Path | None = None) -> dict[str, Any]:
    caps = {k: CAPABILITIES for k in ("bounding", "effective", "permitted")}
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={spec.tmp_size}"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    extra = list(spec.extra_mounts)
    if spec.resolv_conf is not None and directory is not None:
        extra.append((directory / "resolv.conf", "/etc/resolv.conf"))
    if spec.ca_bundle is not None and directory is not None:
        extra += [(directory / "ca-bundle.pem", f"/{p}") for p in ca_paths(spec.rootfs)]
    for host, path in extra:
        mounts.append({"destination": path, "type": "bind", "source": str(host),
                       "options": ["rbind", "ro"]})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": spec.argv,
            "env": spec.env,
            "cwd": spec.cwd or "/",
            "capabilities": {**caps, "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(spec.rootfs), "readonly": True},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroup,
            "resources": {
                "memory": {"limit": spec.memory, "swap": spec.memory},
                "cpu": {"quota": max(1000, int(spec.cpu * CPU_PERIOD)), "period": CPU_PERIOD},
                "pids": {"limit": spec.host_pids},
            },
            "namespaces": [*({"type": t} for t in ("pid", "ipc", "uts", "mount")),
                           {"type": "network", **({"path": spec.netns} if spec.netns else {})}],
        },
    }


def write(directory: Path, spec: RunSpec, cgroup: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if spec.resolv_conf is not None:
        (directory / "resolv.conf").write_text(spec.resolv_conf)
    if spec.ca_bundle is not None:
        (directory / "ca-bundle.pem").write_bytes(ca_bundle(spec.rootfs, spec.ca_bundle))
    path = directory / "config.json"
    path.write_text(json.dumps(config(spec, cgroup, directory), indent=1))
    return directory
