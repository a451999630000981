"""The control plane's composition root: the one place that assembles the API server,
the scheduler, the telemetry owner, the shared counters and the controllers, for
`clrk dev` and for the controller-manager of a cluster alike. Nothing below it imports
it (the import-linter contract in ``.importlinter`` says so)."""
