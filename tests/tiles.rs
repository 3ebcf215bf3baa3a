//! Vector tiles through the real router on both stores: decoded MVT layers, feature counts
//! against the city, properties, geometry inside the tile plus its buffer, TileJSON, filters,
//! 204 for empty tiles, ETag revalidation, gzip and bad input.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use geo::{BoundingRect, CoordsIter, Geometry, InteriorPoint, Intersects};
use geozero::mvt::{Message, Tile, tile};
use onemap::app;
use onemap::geo::tile::{TileCoord, lonlat_to_mercator};
use onemap::tiles::{BUFFER, EXTENT, buffered_bounds};

fn decode(bytes: &[u8]) -> Tile {
    Tile::decode(bytes).expect("a valid MVT")
}

fn geometries(layer: &tile::Layer) -> Vec<Geometry<f64>> {
    layer
        .features
        .iter()
        .map(|f| {
            let mut w = geozero::geo_types::GeoWriter::new();
            geozero::mvt::process_geom(f, &mut w)
                .unwrap_or_else(|e| panic!("undecodable {:?} feature: {e:?}", f.r#type));
            w.take_geometry().expect("a geometry")
        })
        .collect()
}

fn tag<'a>(layer: &'a tile::Layer, f: &tile::Feature, key: &str) -> Option<&'a tile::Value> {
    f.tags.chunks(2).find(|kv| layer.keys[kv[0] as usize] == key).map(|kv| &layer.values[kv[1] as usize])
}

fn tile_of(lon: f64, lat: f64, z: u8) -> TileCoord {
    onemap::geo::tile::tiles_covering([lon, lat, lon, lat], z).next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_tiles_on_both_stores() {
    let city = small_city();
    for (label, state) in both_stores("tiles", city).await {
        let router = app(state.clone().with_public_read());
        let g = &city.grids[city.grids.len() / 3];
        let p = g.geom.interior_point().unwrap();

        // A composite tile at z16: one MVT layer per collection, named after it.
        let t = tile_of(p.x(), p.y(), 16);
        let r = get(&router, &format!("/tiles/grids,components/{}/{}/{}", t.z, t.x, t.y)).await;
        assert_eq!(r.status, 200, "{label}");
        assert_eq!(r.content_type(), "application/vnd.mapbox-vector-tile");
        let etag = r.headers.get("etag").expect("etag").clone();
        assert!(r.headers.get("cache-control").is_some());
        let tile = decode(&r.body);
        let names: Vec<&str> = tile.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["grids", "components"]);
        let (m, ll) = buffered_bounds(t);
        let lo = -(BUFFER as f64) - 1.0;
        let hi = (EXTENT + BUFFER) as f64 + 1.0;
        for layer in &tile.layers {
            assert_eq!(layer.version, 2);
            assert_eq!(layer.extent, Some(EXTENT));
            for geom in geometries(layer) {
                for c in geom.coords_iter() {
                    assert!(
                        c.x >= lo && c.x <= hi && c.y >= lo && c.y <= hi,
                        "{} coordinate {c:?} outside tile + buffer",
                        layer.name
                    );
                }
            }
        }
        // Grids: our grid is there with its code, and the count matches the city's grids that
        // meet the buffered tile.
        let grids = &tile.layers[0];
        let codes: Vec<String> =
            grids.features.iter().filter_map(|f| tag(grids, f, "code").and_then(|v| v.string_value.clone())).collect();
        assert!(codes.iter().any(|c| c == g.code.as_str()));
        let rect = geo::Rect::new((ll[0], ll[1]), (ll[2], ll[3]));
        let expected_grids = city.grids.iter().filter(|x| x.geom.intersects(&rect)).count();
        assert_eq!(grids.features.len(), expected_grids, "{label} grids in tile");
        // Components: every point in the buffered tile, with class and status properties.
        let comps = &tile.layers[1];
        let in_tile = |c: &&onemap::model::Component| {
            let ip = c.geom.to_geometry().interior_point().unwrap();
            let (x, y) = lonlat_to_mercator(ip.x(), ip.y());
            geo::Rect::new((m[0], m[1]), (m[2], m[3])).intersects(&geo::Point::new(x, y))
        };
        let points =
            city.components.iter().filter(|c| matches!(c.geom, onemap::model::Shape::Point(_))).filter(in_tile).count();
        let decoded_points = geometries(comps).iter().filter(|g| matches!(g, Geometry::Point(_))).count();
        assert_eq!(decoded_points, points, "{label} component points in tile");
        for f in &comps.features {
            assert!(tag(comps, f, "class_code").is_some() && tag(comps, f, "status").is_some());
        }

        // Filters: only street lamps; other layers untouched.
        let r = get(&router, &format!("/tiles/grids,components/{}/{}/{}?class_code=0118", t.z, t.x, t.y)).await;
        if r.status == 200 {
            let tile = decode(&r.body);
            for l in tile.layers.iter().filter(|l| l.name == "components") {
                for f in &l.features {
                    assert_eq!(tag(l, f, "class_code").unwrap().string_value.as_deref(), Some("0118"));
                }
            }
            assert!(tile.layers.iter().any(|l| l.name == "grids" && l.features.len() == expected_grids));
        }

        // Districts at z10: simplified but present, properties carried.
        let t10 = tile_of(p.x(), p.y(), 10);
        let r = get(&router, &format!("/tiles/districts/{}/{}/{}.pbf", t10.z, t10.x, t10.y)).await;
        assert_eq!(r.status, 200);
        let d = decode(&r.body);
        assert_eq!(d.layers[0].features.len(), city.districts.len());
        let names: Vec<String> = d.layers[0]
            .features
            .iter()
            .filter_map(|f| tag(&d.layers[0], f, "name").and_then(|v| v.string_value.clone()))
            .collect();
        assert!(names.iter().any(|n| n == "桑珠孜区"));

        // Below their aggregation zoom, point layers are counts per cell; case_density always is.
        // Every record whose point lies in the tile is counted exactly once.
        let t12 = tile_of(p.x(), p.y(), 12);
        let r = get(&router, &format!("/tiles/components,cases,case_density/{}/{}/{}", t12.z, t12.x, t12.y)).await;
        assert_eq!(r.status, 200);
        let agg = decode(&r.body);
        let [l, b, rr, tt] = t12.bounds_mercator();
        // A record counts where its envelope centre is (the point itself for point records).
        let inside = |g: Geometry<f64>| {
            let c = g.bounding_rect().unwrap().center();
            let (x, y) = lonlat_to_mercator(c.x, c.y);
            x >= l && x < rr && y > b && y <= tt
        };
        let n_comp = city.components.iter().filter(|c| inside(c.geom.to_geometry())).count() as u64;
        let n_case = city.cases.iter().filter(|c| inside(c.geom.into())).count() as u64;
        assert!(n_comp > 0 && n_case > 0);
        for (name, expected) in [("components", n_comp), ("cases", n_case), ("case_density", n_case)] {
            let layer = agg.layers.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("{name} layer"));
            assert!(layer.features.len() <= 4096);
            let total: u64 = layer.features.iter().map(|f| tag(layer, f, "count").unwrap().uint_value.unwrap()).sum();
            assert_eq!(total, expected, "{label}: {name} counts at z12");
        }
        let filtered = decode(
            &get(&router, &format!("/tiles/case_density/{}/{}/{}?source=public", t12.z, t12.x, t12.y)).await.body,
        );
        let total: u64 = filtered.layers[0]
            .features
            .iter()
            .map(|f| tag(&filtered.layers[0], f, "count").unwrap().uint_value.unwrap())
            .sum();
        let expected = city.cases.iter().filter(|c| c.source == "public" && inside(c.geom.into())).count() as u64;
        assert_eq!(total, expected, "filters apply to density");

        // ETag revalidation and gzip.
        let uri = format!("/tiles/grids,components/{}/{}/{}", t.z, t.x, t.y);
        let r =
            send(&router, Request::get(&uri).header("if-none-match", etag.clone()).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, 304);
        let r = send(&router, Request::get(&uri).header("accept-encoding", "gzip").body(Body::empty()).unwrap()).await;
        assert_eq!(r.headers.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
        assert_eq!(r.headers.get("etag"), Some(&etag));

        // Empty tile far from the city: 204.
        assert_eq!(get(&router, "/tiles/grids,components/14/0/0").await.status, 204);

        // TileJSON.
        let tj = get(&router, "/tiles/grids,cases").await.json();
        let density = get(&router, "/tiles/case_density").await.json();
        assert!(density["vector_layers"][0]["fields"]["count"].is_string());
        assert_eq!(tj["tilejson"], "3.0.0");
        assert!(tj["tiles"][0].as_str().unwrap().ends_with("/tiles/grids,cases/{z}/{x}/{y}"));
        let ids: Vec<&str> =
            tj["vector_layers"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["grids", "cases"]);
        assert!(tj["vector_layers"][0]["fields"]["code"].is_string());
        assert_eq!(tj["vector_layers"][0]["minzoom"], 13, "grids start where a grid is a few pixels");
        let t12 = tile_of(p.x(), p.y(), 12);
        assert_eq!(get(&router, &format!("/tiles/grids/{}/{}/{}", t12.z, t12.x, t12.y)).await.status, 204);
        let b = tj["bounds"].as_array().unwrap();
        let bb = g.geom.bounding_rect().unwrap();
        assert!(b[0].as_f64().unwrap() <= bb.min().x && b[2].as_f64().unwrap() >= bb.max().x);
        assert!(tj["minzoom"].is_number() && tj["maxzoom"].is_number());

        // Bad input: 400 or 404 problems, never 500.
        for (uri, status) in [
            ("/tiles/grids/25/0/0", 400),
            ("/tiles/grids/3/8/0", 400),
            ("/tiles/grids/3/0/8", 400),
            ("/tiles/grids/a/0/0", 400),
            ("/tiles/grids/3/-1/0", 400),
            ("/tiles/nope/3/0/0", 404),
            ("/tiles/grids,nope/3/0/0", 404),
            ("/tiles/nope", 404),
            ("/tiles/grids/14/0/0?no_such=1", 400),
        ] {
            get(&router, uri).await.problem(status);
        }
        state.store.close().await;
    }
}
