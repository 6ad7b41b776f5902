"""A third-party-style Ray actor: an LRU cache. It knows nothing about ftactors.

(Imagine this file comes from a package you installed and cannot change.)
"""

from collections import OrderedDict
from typing import Any, Hashable, Optional

import ray


@ray.remote(num_cpus=0)
class LRUCache:
    """A bounded mapping that evicts the least recently used key."""

    def __init__(self, capacity: int = 128) -> None:
        self.capacity = capacity
        self.data: "OrderedDict[Hashable, Any]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def put(self, key: Hashable, value: Any) -> Optional[Hashable]:
        """Store ``value``; returns the evicted key, if any."""
        self.data[key] = value
        self.data.move_to_end(key)
        if len(self.data) > self.capacity:
            evicted, _ = self.data.popitem(last=False)
            return evicted
        return None

    def get(self, key: Hashable, default: Any = None) -> Any:
        if key in self.data:
            self.hits += 1
            self.data.move_to_end(key)
            return self.data[key]
        self.misses += 1
        return default

    def keys(self) -> list:
        return list(self.data)

    def stats(self) -> dict:
        return {"size": len(self.data), "hits": self.hits, "misses": self.misses, "capacity": self.capacity}
