"""AWS resource providers: one module per resource type, plus `aws.py` for sessions and clients."""
