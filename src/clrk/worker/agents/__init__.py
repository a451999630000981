"""Agent executions: the TaskAgent contract (envelope in, stdout out) and its outcomes."""
