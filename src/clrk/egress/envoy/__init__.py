"""Envoy: the binary, its generated configuration (xDS over files) and its supervisor."""
