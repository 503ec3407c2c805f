"""Subcommands that run an evaluation, registered on the `evalops` command line by `cli.py`."""

from __future__ import annotations

import argparse


def add_run_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the run subcommands; each one sets `handler` (a function of the parsed args returning the exit code).

    No run subcommand exists yet, so nothing is added.
    """
