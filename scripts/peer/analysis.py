#!/usr/bin/env python3
"""The analysis peer: computes with PySAL (esda, libpysal), h3-py, pymannkendall, scipy and pyproj
what onemap's analysis computes, on fixtures that tests/analysis_peer.rs writes, so the Rust tests
can compare the two to 1e-9.

    python analysis.py INPUT.json OUTPUT.json

Input: {"polygon_sets": [{"name", "polygons": [[[ring of [x, y]], ...], ...] (one list of
polygons per unit), "values": [...]}], "h3": [{"name", "res", "outline": [[[x, y], ...]] (polygons,
exterior rings), "points": [[lon, lat], ...]}], "cubes": [{"name", "set", "steps", "values": unit-major}],
"mk": [[...], ...], "gk": {"epsg": 4547, "points": [[lon, lat], ...]}}.
"""

import json
import sys
import warnings

import esda
import geopandas
import h3
import numpy as np
import pymannkendall
import scipy.stats
import shapely
from libpysal.graph import Graph
from libpysal.weights import W
from pyproj import Transformer

warnings.filterwarnings("ignore")


def shapes(units):
    out = []
    for polys in units:
        parts = [shapely.Polygon(p[0], p[1:]) for p in polys]
        out.append(parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts))
    return out


def as_w(neighbours):
    """A libpysal W with ids 0..n-1 in order from neighbour lists."""
    n = len(neighbours)
    return W({i: list(neighbours[i]) for i in range(n)}, id_order=list(range(n)), silence_warnings=True)


def fl(a):
    return [None if (x is None or not np.isfinite(x)) else float(x) for x in np.asarray(a, dtype=float)]


def statistics(values, neighbours):
    y = np.asarray(values, dtype=float)
    w = as_w(neighbours)
    out = {}
    g = esda.G_Local(y, w, transform="B", permutations=0, star=True)
    out["gi_z"] = fl(g.Zs)
    # esda reports one-sided p-values (the normal survival function of |z|); two-sided doubles it.
    out["gi_p"] = fl(2.0 * scipy.stats.norm.sf(np.abs(g.Zs)))
    p = np.asarray([np.nan if v is None else v for v in out["gi_p"]], dtype=float)
    # Undefined p-values (no variance) are not tests.
    q = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = scipy.stats.false_discovery_control(p[ok], method="bh")
    out["gi_q"] = fl(q)
    lm = esda.Moran_Local(y, as_w(neighbours), transformation="r", permutations=0)
    out["lm_is"] = fl(lm.Is)
    out["lm_ei"] = fl(lm.EI)
    out["lm_vi"] = fl(lm.VI)
    out["lm_q"] = [int(q) for q in lm.q]
    gm = esda.Moran(y, as_w(neighbours), transformation="r", permutations=0)
    out["moran"] = {"i": float(gm.I), "ei": float(gm.EI), "vi": float(gm.VI_rand), "z": float(gm.z_rand),
                    "p": float(gm.p_rand)}
    return out


def polygon_set(s):
    geoms = shapes(s["polygons"])
    # Queen contiguity by the strict topological test: units sharing at least one boundary point.
    graph = Graph.build_contiguity(geopandas.GeoSeries(geoms), rook=False, strict=True)
    neighbours = [sorted(int(j) for j in graph[i].index) if i in graph.unique_ids else [] for i in range(len(geoms))]
    neighbours = [[j for j in ns if j != i] for i, ns in enumerate(neighbours)]
    out = {"name": s["name"], "neighbours": neighbours}
    out.update(statistics(s["values"], neighbours))
    return out, neighbours


def h3_set(s):
    res = s["res"]
    cells = set()
    for ring in s["outline"]:
        poly = h3.LatLngPoly([(lat, lon) for lon, lat in ring])
        cells.update(h3.h3shape_to_cells_experimental(poly, res, contain="overlap"))
    point_cells = [h3.latlng_to_cell(lat, lon, res) for lon, lat in s["points"]]
    # The units: the cover (onemap's), sorted by the integer index as onemap sorts them.
    cells = sorted(cells, key=lambda c: int(c, 16))
    pos = {c: i for i, c in enumerate(cells)}
    counts = [0.0] * len(cells)
    outside = 0
    for c in point_cells:
        if c in pos:
            counts[pos[c]] += 1
        else:
            outside += 1
    neighbours = [sorted(pos[d] for d in h3.grid_disk(c, 1) if d in pos and d != c) for c in cells]
    out = {"name": s["name"], "cells": cells, "point_cells": point_cells, "counts": counts, "outside": outside,
           "neighbours": neighbours}
    out.update(statistics(counts, neighbours))
    return out


def cube(c, neighbours):
    """Gi* on a space-time cube: (i, t) neighbours (j, s) for j in N(i) and i, s in t-1..t."""
    t_len = c["steps"]
    n = len(neighbours)
    nb = {}
    for i in range(n):
        for t in range(t_len):
            ids = []
            for s in range(max(0, t - 1), t + 1):
                for j in [i] + list(neighbours[i]):
                    if (j, s) != (i, t):
                        ids.append(j * t_len + s)
            nb[i * t_len + t] = sorted(ids)
    w = W(nb, id_order=list(range(n * t_len)), silence_warnings=True)
    g = esda.G_Local(np.asarray(c["values"], dtype=float), w, transform="B", permutations=0, star=True)
    z = fl(g.Zs)
    series = [z[i * t_len:(i + 1) * t_len] for i in range(n)]
    mk = [mann_kendall(s) for s in series]
    return {"name": c["name"], "z": z, "mk": mk}


def mann_kendall(series):
    r = pymannkendall.original_test(np.asarray(series, dtype=float), alpha=0.10)
    return {"s": float(r.s), "var_s": float(r.var_s), "z": float(r.z), "p": float(r.p), "tau": float(r.Tau)}


def main():
    inp = json.load(open(sys.argv[1]))
    out = {"polygon_sets": [], "h3": [], "cubes": [], "mk": [], "gk": None}
    graphs = {}
    for s in inp.get("polygon_sets", []):
        o, neighbours = polygon_set(s)
        graphs[s["name"]] = neighbours
        out["polygon_sets"].append(o)
    for s in inp.get("h3", []):
        out["h3"].append(h3_set(s))
    for c in inp.get("cubes", []):
        out["cubes"].append(cube(c, graphs[c["set"]]))
    out["mk"] = [mann_kendall(s) for s in inp.get("mk", [])]
    if inp.get("gk"):
        t = Transformer.from_crs("EPSG:4490", f"EPSG:{inp['gk']['epsg']}", always_xy=True)
        out["gk"] = [list(t.transform(lon, lat)) for lon, lat in inp["gk"]["points"]]
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
