"""The egress policy service: the Python half of the data plane (Envoy's ext_proc)."""
