"""The `clrk dev` terminal UI: k9s-style views of the agents, the system and the live
telemetry tee. ``feed`` gathers (API server, dev.sock, the OTLP tail), ``rates`` and
``lines`` compute and format without I/O, ``app`` draws with Textual."""
