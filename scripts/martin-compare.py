#!/usr/bin/env python3
"""Uncached tiles of onemap and Martin side by side, over the same PostGIS store.

    martin-compare.py PG_URL ONEMAP_URL MARTIN_URL [SECONDS]

For each layer (components, cases, grids) and zoom (12-16) it samples tiles where the layer has
data (from the records' positions in PostGIS), keeps those both servers answer non-empty, and
runs wrk (2 threads, 8 connections, gzip accepted) over the same list against each server in
turn. Prints a Markdown table of tiles/s, the ratio, and the mean tile size (uncompressed) of
each. onemap draws point layers as counts per cell below its aggregation zoom (components below
z16, cases below z15), where Martin sends every point: those rows say so.
"""

import math
import os
import random
import subprocess
import sys
import urllib.request

PG, ONEMAP, MARTIN = sys.argv[1:4]
SECONDS = int(sys.argv[4]) if len(sys.argv) > 4 else 10
LAYERS = ["components", "cases", "grids"]
ZOOMS = [12, 13, 14, 15, 16]
# Below these zooms onemap sends counts per cell instead of the points.
AGGREGATE_BELOW = {"components": 16, "cases": 15}
PER_LIST = 300
WRK_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk-tiles.lua")


def sample_points(layer, n):
    """`n` representative points of the layer's records, from PostGIS."""
    geom = "ST_PointOnSurface(geom)" if layer == "grids" else "ST_Centroid(geom)"
    sql = f"SELECT ST_X({geom}), ST_Y({geom}) FROM {layer} ORDER BY random() LIMIT {n}"
    out = subprocess.run(["psql", PG, "-tAF,", "-c", "SELECT setseed(0.7)", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    pts = []
    for line in out.splitlines():
        parts = line.split(",")
        if len(parts) == 2 and parts[0]:
            pts.append((float(parts[0]), float(parts[1])))
    return pts


def tile_of(lon, lat, z):
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return z, min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def fetch(url):
    """Status and uncompressed length of a tile."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, len(r.read())
    except urllib.error.HTTPError as e:
        return e.code, 0


def wrk(base, paths_file):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{SECONDS}s", "-s", WRK_LUA, base, "--", paths_file],
                         check=True, capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.startswith("tiles/s:")][-1]
    rate = float(line.split()[1].rstrip(","))
    p50 = float(line.split("p50 ")[1].split()[0])
    errors = line.split("errors ")[1]
    return rate, p50, errors


def main():
    random.seed(7)
    os.makedirs("var/bench/martin", exist_ok=True)
    rows = []
    for layer in LAYERS:
        pts = sample_points(layer, 4000)
        for z in ZOOMS:
            tiles = sorted({tile_of(lon, lat, z) for lon, lat in pts})
            random.shuffle(tiles)
            kept, om_bytes, mt_bytes = [], 0, 0
            for (tz, tx, ty) in tiles:
                if len(kept) >= PER_LIST:
                    break
                s1, b1 = fetch(f"{ONEMAP}/tiles/{layer}/{tz}/{tx}/{ty}")
                s2, b2 = fetch(f"{MARTIN}/{layer}/{tz}/{tx}/{ty}")
                if s1 == 200 and s2 == 200 and b1 > 0 and b2 > 0:
                    kept.append((tz, tx, ty))
                    om_bytes += b1
                    mt_bytes += b2
            if not kept:
                rows.append((layer, z, 0, None, None, None, None, None, ""))
                continue
            om_file = f"var/bench/martin/onemap-{layer}-{z}.txt"
            mt_file = f"var/bench/martin/martin-{layer}-{z}.txt"
            with open(om_file, "w") as f:
                f.writelines(f"/tiles/{layer}/{tz}/{tx}/{ty}\n" for tz, tx, ty in kept)
            with open(mt_file, "w") as f:
                f.writelines(f"/{layer}/{tz}/{tx}/{ty}\n" for tz, tx, ty in kept)
            om = wrk(ONEMAP, om_file)
            mt = wrk(MARTIN, mt_file)
            note = "counts per cell / every point" if z < AGGREGATE_BELOW.get(layer, 0) else "same features"
            rows.append((layer, z, len(kept), om, mt, om_bytes / len(kept) / 1024, mt_bytes / len(kept) / 1024, None, note))
            print(f"{layer} z{z}: {len(kept)} tiles, onemap {om[0]:.0f}/s, Martin {mt[0]:.0f}/s", file=sys.stderr)
    print(f"| layer | zoom | tiles | onemap tiles/s | Martin tiles/s | ratio | p50 ms onemap / Martin | mean KB onemap / Martin | features |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layer, z, n, om, mt, okb, mkb, _, note in rows:
        if not n:
            print(f"| {layer} | {z} | 0 | - | - | - | - | - | not drawn by both |")
            continue
        print(f"| {layer} | {z} | {n} | {om[0]:,.0f} | {mt[0]:,.0f} | {om[0] / mt[0]:.1f}x | "
              f"{om[1]:.2f} / {mt[1]:.2f} | {okb:.1f} / {mkb:.1f} | {note} |")
        for who, r in (("onemap", om), ("Martin", mt)):
            if not r[2].startswith("0 (non-2xx 0)"):
                print(f"<!-- {who} {layer} z{z}: errors {r[2]} -->")


if __name__ == "__main__":
    main()
