"""The in-memory side of trigger dedup: (trigger name, context hash) keys of runs in flight.

The store decides (a fire is refused while an identical one is open there); this set only
spares the store a round trip for fires that this runner already knows to be duplicates.
"""

from __future__ import annotations

from typing import Iterable

DedupKey = tuple[str, str]


class InflightFires:
    """Keys of trigger-launched runs that this runner is executing or about to launch."""

    def __init__(self) -> None:
        self._keys: set[DedupKey] = set()

    def hold(self, key: DedupKey) -> bool:
        """Take the key; False if it is already held."""
        if key in self._keys:
            return False
        self._keys.add(key)
        return True

    def release(self, key: DedupKey) -> None:
        self._keys.discard(key)

    def rebuild(self, keys: Iterable[DedupKey]) -> None:
        """Replace the contents with the keys read back from the store."""
        self._keys = set(keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
