"""The reconcile engine: desired graph, observed AWS, plan, apply, one pass (reconcile)."""
