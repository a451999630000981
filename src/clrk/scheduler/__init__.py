"""Worker registry and picking: clrk's own scheduler (no pod per execution)."""
