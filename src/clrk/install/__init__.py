"""`clrk install` and `clrk upgrade` without the command line: the manifests that put clrk on a
Kubernetes cluster, their serving certificate, applying them, and waiting for readiness.

It sits between :mod:`clrk.cli` and the control plane (see ``.importlinter``): it talks to a
cluster only through lightkube and knows the control plane only by the Deployment that runs
it, never by importing it.
"""

from __future__ import annotations


class InstallError(Exception):
    """Installing or upgrading cannot go on; the message says why, in one line."""
