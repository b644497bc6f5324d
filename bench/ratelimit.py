"""Rate limiter benchmark, run by hand: `.venv/bin/python bench/ratelimit.py`.

Fills api/ratelimit.py's FixedWindowLimiter with 1,000 and with 100,000 live
(route, client) windows, then times 2,000 hits of new clients and prints the cost
per new client at both sizes with the ratio large/small (the target is < 2: forgetting
finished windows is amortised O(1)). The same run measures the sweep it replaced
(rebuild the whole table on each new client past 10,000 windows) as the baseline;
the hits go through the same limiter otherwise."""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

# The repository instead of bench/, whose http.py would shadow the standard library's.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.dialect import RateLimit
from api.ratelimit import FixedWindowLimiter

RULE = RateLimit(5, 10.0)
NOW = 1_700_000_003.0
NEW_CLIENTS = 2_000


class RebuildingLimiter:
    """The limiter before: past 10,000 windows, every new client rebuilt the table."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def hit(self, route: str, client: str, rule: RateLimit) -> None:
        now = NOW
        end = (math.floor(now / rule.window) + 1) * rule.window
        key = (route, client)
        seen = self._windows.get(key)
        count = seen[1] + 1 if seen is not None and seen[0] == end else 1
        if len(self._windows) >= 10_000 and key not in self._windows:
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        self._windows[key] = (end, count)


def per_new_client(make: type, live: int) -> float:
    """Median microseconds per new client's hit, with `live` windows open, of 3 runs."""
    runs = []
    for _ in range(3):
        if make is FixedWindowLimiter:
            limiter = make(lambda: NOW)
            for n in range(live):
                limiter.hit("nekosmoe.random", f"addr:{n}", RULE)
        else:  # filled directly: through hit() the fill itself is quadratic
            limiter = make()
            end = (math.floor(NOW / RULE.window) + 1) * RULE.window
            limiter._windows = {("nekosmoe.random", f"addr:{n}"): (end, 1) for n in range(live)}
        start = time.perf_counter()
        for n in range(NEW_CLIENTS):
            limiter.hit("nekosmoe.random", f"addr:new{n}", RULE)
        runs.append((time.perf_counter() - start) / NEW_CLIENTS * 1e6)
    return statistics.median(runs)


def main() -> None:
    print(f"{'limiter':<28}{'1k live':>12}{'100k live':>12}{'ratio':>8}")
    for name, make in (
        ("rebuild past 10k (before)", RebuildingLimiter),
        ("expiry queues (now)", FixedWindowLimiter),
    ):
        small, large = per_new_client(make, 1_000), per_new_client(make, 100_000)
        print(f"{name:<28}{small:>10.2f}us{large:>10.2f}us{large / small:>8.1f}")


if __name__ == "__main__":
    main()
