"""The egress data plane: Envoy configuration from EgressGateways, routes and policies,
and the node-local Envoy each worker supervises."""
