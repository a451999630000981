"""Sandboxes: the OCI bundle an execution runs in, and the runsc process that runs it."""
