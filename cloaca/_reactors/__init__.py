"""Reactors and accumulators: declarations (GRAPHS.md C2, C3) and the live runtime (C13)."""

from .definitions import (
    batch_accumulator,
    passthrough_accumulator,
    polling_accumulator,
    reactor,
    state_accumulator,
    stream_accumulator,
)

__all__ = [
    "batch_accumulator",
    "passthrough_accumulator",
    "polling_accumulator",
    "reactor",
    "state_accumulator",
    "stream_accumulator",
]
