"""The worker: images, sandboxes, agent executions on one node."""
