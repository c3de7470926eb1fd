"""How near two countries' territories can be, from a country alone (the packaged IP database knows countries, not
coordinates): points spread over each country's towns (countries.csv, made by scripts/make_countries.py) give the
nearest two of their towns can be, less how far a town may be from the points kept and a margin for land beyond
towns. A lower bound: travel judged on it is never called impossible when it was not."""
from __future__ import annotations

import csv
import math
import os
from functools import lru_cache

MARGIN_KM = 50.0  # land beyond the towns the points were taken from
_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "countries.csv")


@lru_cache(maxsize=1)
def _points() -> dict[str, tuple[list[tuple[float, float]], float]]:
    found: dict[str, tuple[list[tuple[float, float]], float]] = {}
    with open(_FILE, encoding="utf-8") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            points, _ = found.setdefault(row["country"], ([], float(row["cover_km"])))
            points.append((float(row["lat"]), float(row["lon"])))
    return found


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(min(1.0, h)))


@lru_cache(maxsize=4096)
def nearest_km(a: str, b: str) -> float | None:
    """The least distance between two countries' territories, in km (0 for the same country; None for a country
    the table does not know)."""
    if a == b:
        return 0.0
    known = _points()
    if a not in known or b not in known:
        return None
    (points_a, cover_a), (points_b, cover_b) = known[a], known[b]
    nearest = min(_km(p, q) for p in points_a for q in points_b)
    return max(0.0, nearest - cover_a - cover_b - MARGIN_KM)
