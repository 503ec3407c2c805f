"""The local engine: the plan run on one machine with the same step entry points."""
