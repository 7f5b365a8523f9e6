"""kopf handlers, one module per kind: parse the body, plan, apply, write status, emit events."""
