#!/usr/bin/env python3
"""GDAL's OGCAPI driver reading a collection's vector tileset, for tests/ogc_tiles.rs.

    ogcapi_tiles.py BASE_URL COLLECTION ZOOM OUTPUT.json

GDAL comes from pyogrio's wheel (GDAL 3.12 with the OGCAPI and MVT drivers; Debian 12's GDAL
3.6 has no vector-tile branch in its OGCAPI driver). The driver takes the collection's extent
from its CRS84 bbox but counts tiles in the tiling scheme's CRS, so the extent is handed over in
EPSG:3857 with its MINX..MAXY open options, as GDAL's documentation says for such servers.
Writes GDAL's version, the layers the driver made (one per tile matrix), the fields and the
distinct `code` values of the features read at ZOOM, and how many features it read.
"""

import json
import math
import sys
import urllib.request

import pyogrio
from pyogrio import raw

base, collection, zoom, out = sys.argv[1:5]
with urllib.request.urlopen(f"{base}/collections/{collection}", timeout=60) as r:
    lon0, lat0, lon1, lat1 = json.load(r)["extent"]["spatial"]["bbox"][0]
R = 6378137.0


def mercator(lon, lat):
    return R * math.radians(lon), R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


(x0, y0), (x1, y1) = mercator(lon0, lat0), mercator(lon1, lat1)
opts = {"API": "TILES", "MINX": repr(x0), "MINY": repr(y0), "MAXX": repr(x1), "MAXY": repr(y1)}
url = f"OGCAPI:{base}/collections/{collection}"

layers = []
while True:
    try:
        info = pyogrio.read_info(url, layer=len(layers), **opts)
    except Exception:  # past the last layer
        break
    layers.append({"name": info["layer_name"], "fields": list(info["fields"]), "crs": info["crs"]})

meta, _fids, geometry, fields = raw.read(url, layer=f"Zoom level {zoom}", **opts)
names = list(meta["fields"])
codes = sorted({str(c) for c in fields[names.index("code")]}) if "code" in names else []
with open(out, "w") as f:
    json.dump(
        {
            "gdal": pyogrio.__gdal_version_string__,
            "drivers": {k: v for k, v in pyogrio.list_drivers().items() if k in ("OGCAPI", "MVT")},
            "layers": layers,
            "fields": names,
            "features": len(geometry),
            "with_geometry": int(sum(g is not None and len(g) > 0 for g in geometry)),
            "codes": codes,
        },
        f,
        ensure_ascii=False,
    )
