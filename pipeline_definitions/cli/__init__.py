"""The `evalops` command line."""
