"""The plan rendered as a SageMaker pipeline definition (offline, deterministic)."""
