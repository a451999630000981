"""A worker's egress plane with its real Envoy, fed the watch events it would get: a
sandbox of a gateway whose CA Secret has not reached the worker yet waits for it (and
for Envoy to load the chains it signs), since without it every TLS connection of the
agent fails. Before, the sandbox started without the CA, and an agent invoked right
after its gateway was made could reach nothing."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from clrk import pki
from clrk.api.core import Secret
from clrk.api.gateway import EgressGateway
from clrk.worker.egress import EgressPlane
from tests.kube_cluster import free_port

INDEX = 15  # gateway ports no `clrk dev` of the suite uses (its workers are 0 and 1)


async def test_a_sandbox_waits_for_its_gateways_ca(tmp_path: Path) -> None:
    # The plane's watches are not started here: this test delivers their events.
    client = AsyncClient(KubeConfig.from_dict({
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "k"}), trust_env=False)
    plane = EgressPlane(client, tmp_path, "default", INDEX, "worker-ca-wait")
    await plane.envoy.start()
    try:
        await plane.envoy.ready()
        plane.seen(EgressGateway, "ADDED", {
            "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressGateway",
            "metadata": {"name": "gw", "namespace": "default"}, "spec": {},
            "status": {"caSecretName": "clrk-egressgateway-ca-gw"}})
        port = plane.port_for("default", "gw")
        assert port is not None
        waiting = asyncio.create_task(plane.ca_at(port))
        await asyncio.sleep(1)
        assert not waiting.done()  # no CA yet: the sandbox is not started without it
        # A Secret the gateway does not use changes nothing.
        plane.seen(Secret, "ADDED", {"metadata": {"name": "other"}, "data": {"k": "dg=="}})
        await asyncio.sleep(0.2)
        assert not waiting.done()
        ca = pki.generate_ca("clrk egress gw")
        plane.seen(Secret, "ADDED", {
            "metadata": {"name": "clrk-egressgateway-ca-gw"},
            "data": {"tls.crt": base64.b64encode(ca.cert_pem).decode(),
                     "tls.key": base64.b64encode(ca.key_pem).decode()}})
        assert await asyncio.wait_for(waiting, 10) == ca.cert_pem
        # Once the worker has it, a sandbox has it at once.
        assert await asyncio.wait_for(plane.ca_at(port), 1) == ca.cert_pem
    finally:
        await plane.envoy.stop()
        await client.close()
