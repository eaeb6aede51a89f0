"""Accelerator-hours from tokens and a throughput: the one place tpt turns a rate into a cost."""

from __future__ import annotations

SECONDS_PER_HOUR = 3600


def gpu_hours(tokens: float, tokens_per_second: float, devices: float = 1) -> float:
    """The hours `devices` accelerators spend on `tokens` at `tokens_per_second` between them (with one device:
    the wall hours)."""
    return tokens / tokens_per_second / SECONDS_PER_HOUR * devices
