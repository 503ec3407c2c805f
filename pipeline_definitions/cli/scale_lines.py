"""`evalops plan`'s section on the run at scale (pipeline_definitions/estimating/scale.py)."""

from __future__ import annotations

from pipeline_definitions.estimating.scale import SCALE_ASSUMPTIONS, concurrency_warnings, scale_rows
from step_code.contract.config import Config


def _hours(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def scale_lines(config: Config) -> list[str]:
    lines = [
        "At scale (per model; shards = evaluate instances, each sending max_concurrency requests):",
        f"  {'model':<28} {'prompts':>9} {'shards':>6} {'in flight':>9} {'endpoint':<20} "
        f"{'calls/endpoint inst':>19} {'wall':>8} {'cost':>11}",
    ]
    for row in scale_rows(config):
        endpoint = f"{row.endpoint} x{row.endpoint_instances}" if row.endpoint else "-"
        per_instance = f"{row.calls_per_endpoint_instance:,}" if row.calls_per_endpoint_instance is not None else "-"
        cost = f"${row.usd:,.2f}" if row.usd is not None else "unpriced"
        lines.append(
            f"  {row.model:<28} {row.prompts:>9,} {row.shards:>6} {row.requests_in_flight:>9} {endpoint:<20} "
            f"{per_instance:>19} {_hours(row.wall_minutes):>8} {cost:>11}"
        )
    lines.append("  Assumptions:")
    lines += [f"    - {assumption}" for assumption in SCALE_ASSUMPTIONS]
    warnings = concurrency_warnings(config)
    warnings += [
        f"{row.model}: at {row.prompts:,} prompts its evaluate job would run {_hours(row.evaluate_minutes)}, past the "
        "24 h limit of a processing job: raise shards (and the endpoint's instances)"
        for row in scale_rows(config)
        if row.over_runtime_limit
    ]
    if warnings:
        lines.append("  Warnings:")
        lines += [f"    - {warning}" for warning in warnings]
    return lines
