"""The long-running daemon: Git source, scheduling, HTTP and webhook, status, metrics, logs."""
