//! Uncached tile rendering at city scale, the way the server renders a tile on a cache miss
//! (MVT encoding plus gzip), over tiles sampled where each layer has data, and the largest tile
//! per layer and zoom, and the sizes of the same tiles as MVT and as MapLibre Tiles (MLT) with
//! the cost of the MLT encoding. Also writes a list of tile paths for the HTTP load test.
//!
//! `cargo run --release --example tile_bench -- STORE [SAMPLES] [URL_LIST]`

use std::time::Instant;

use onemap::geo::tile::{TileCoord, tiles_covering};
use onemap::index::Record;
use onemap::tiles::cache::Rendered;
use onemap::tiles::{TileLayer, render};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const LAYERS: &[&str] = &["components", "cases", "grids"];
const ZOOMS: &[u8] = &[10, 12, 14, 16];

/// The distinct tiles at zoom `z` holding `pts`.
fn distinct_tiles(pts: &[[f64; 2]], z: u8) -> Vec<TileCoord> {
    let mut tiles: Vec<TileCoord> =
        pts.iter().filter_map(|p| tiles_covering([p[0], p[1], p[0], p[1]], z).next()).collect();
    tiles.sort_by_key(|t| (t.x, t.y));
    tiles.dedup();
    tiles
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store = args.get(1).expect("usage: tile_bench STORE [SAMPLES] [URL_LIST]");
    let samples: usize = args.get(2).map(|s| s.parse().expect("SAMPLES")).unwrap_or(300);
    let t = Instant::now();
    let st = onemap::server::start(store, false, 0).await.expect("start");
    eprintln!("index loaded in {:.1} s: {:?}", t.elapsed().as_secs_f64(), st.index.counts());
    let index = st.index.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);

    // Representative points of each layer, so sampled tiles are where the data is.
    let points = |layer: &str, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<[f64; 2]> {
        let centre =
            |e: rstar::AABB<[f64; 2]>| [(e.lower()[0] + e.upper()[0]) / 2.0, (e.lower()[1] + e.upper()[1]) / 2.0];
        let all: Vec<[f64; 2]> = match layer {
            "components" => index.components.read().iter().map(|r| centre(r.envelope())).collect(),
            "cases" => index.cases.read().iter().map(|r| centre(r.envelope())).collect(),
            _ => index.grids.read().iter().map(|r| centre(r.envelope())).collect(),
        };
        (0..4 * samples).map(|_| *all.choose(rng).expect("a non-empty layer")).collect()
    };

    println!("| layer | zoom | tiles | p50 ms | p99 ms | max ms | mean KB | max KB |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut urls = Vec::new();
    for &layer in LAYERS {
        let pts = points(layer, &mut rng);
        let tl = [TileLayer::find(layer).expect("known layer")];
        for &z in ZOOMS {
            let tiles = distinct_tiles(&pts, z);
            // At low zooms the city is a few tiles: render each several times.
            let mut runs: Vec<TileCoord> = Vec::new();
            while runs.len() < samples {
                runs.push(tiles[rng.random_range(0..tiles.len())]);
            }
            let mut ms = Vec::with_capacity(runs.len());
            let (mut total, mut max) = (0usize, 0usize);
            for t in &runs {
                let t0 = Instant::now();
                let r = Rendered::new(render(&index, *t, &tl, &[vec![]]));
                ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                total += r.raw.len();
                max = max.max(r.raw.len());
                if urls.len() < 20_000 {
                    urls.push(format!("/tiles/{layer}/{}/{}/{}", t.z, t.x, t.y));
                }
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "| {layer} | {z} | {} distinct | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                tiles.len(),
                percentile(&ms, 0.5),
                percentile(&ms, 0.99),
                ms[ms.len() - 1],
                total as f64 / runs.len() as f64 / 1024.0,
                max as f64 / 1024.0
            );
        }
    }

    // The largest tile of each layer at every zoom from 0 to 18, over every tile of the city at
    // low zooms and over sampled tiles above.
    println!("\n| layer | largest tile per zoom (KB), z0 .. z18 |\n|---|---|");
    let bbox = index.grids.read().bbox().expect("a city with grids");
    for &layer in LAYERS {
        let pts = points(layer, &mut rng);
        let tl = [TileLayer::find(layer).expect("known layer")];
        let mut sizes = Vec::new();
        for z in 0..=18u8 {
            let mut tiles: Vec<TileCoord> = tiles_covering(bbox, z).take(2_000).collect();
            if tiles.len() == 2_000 {
                tiles = distinct_tiles(&pts, z);
            }
            let max =
                tiles.iter().map(|t| render(&index, *t, &tl, &[vec![]]).map_or(0, |b| b.len())).max().unwrap_or(0);
            sizes.push(format!("{:.0}", max as f64 / 1024.0));
        }
        println!("| {layer} | {} |", sizes.join(" / "));
    }

    // MVT against MLT over the same distinct tiles (at most 200 per layer and zoom), raw and as
    // sent gzipped, and the time MLT adds to a cache miss.
    println!(
        "\n| layer | zoom | tiles | MVT KB | MVT gzip KB | MLT KB | MLT gzip KB | MLT/MVT gzip | MLT encode p50 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &layer in LAYERS {
        let pts = points(layer, &mut rng);
        let tl = [TileLayer::find(layer).expect("known layer")];
        for &z in ZOOMS {
            let tiles = distinct_tiles(&pts, z);
            let (mut n, mut sums, mut ms) = (0usize, [0usize; 4], Vec::new());
            for t in tiles.iter().take(200) {
                let Some(mvt) = render(&index, *t, &tl, &[vec![]]) else { continue };
                let t0 = Instant::now();
                let mlt = onemap::tiles::mlt::from_mvt(&mvt).expect("MLT");
                ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                let (a, b) = (Rendered::new(Some(mvt)), Rendered::new(Some(mlt)));
                for (sum, len) in sums.iter_mut().zip([a.raw.len(), a.gzip.len(), b.raw.len(), b.gzip.len()]) {
                    *sum += len;
                }
                n += 1;
            }
            if n == 0 {
                continue;
            }
            ms.sort_by(f64::total_cmp);
            let kb = |v: usize| v as f64 / n as f64 / 1024.0;
            println!(
                "| {layer} | {z} | {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                kb(sums[0]),
                kb(sums[1]),
                kb(sums[2]),
                kb(sums[3]),
                sums[3] as f64 / sums[1] as f64,
                percentile(&ms, 0.5)
            );
        }
    }

    // The gzip a cache miss pays: libdeflate at level 1 (what the server sends) against zlib's
    // level 1 and level 6 through flate2 (the previous encoder, and a compression middleware's
    // default), over the same MVT tiles: mean size and time per tile.
    println!("\n| layer | zoom | tiles | MVT KB | served gzip KB, µs | zlib level 1 KB, µs | zlib level 6 KB, µs |");
    println!("|---|---|---|---|---|---|---|");
    let zlib = |raw: &[u8], level: u32| {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        enc.write_all(raw).expect("in memory");
        enc.finish().expect("in memory")
    };
    for &layer in LAYERS {
        let pts = points(layer, &mut rng);
        let tl = [TileLayer::find(layer).expect("known layer")];
        for &z in ZOOMS {
            let tiles: Vec<Vec<u8>> =
                distinct_tiles(&pts, z).iter().take(200).filter_map(|t| render(&index, *t, &tl, &[vec![]])).collect();
            if tiles.is_empty() {
                continue;
            }
            let measure = |f: &dyn Fn(&[u8]) -> Vec<u8>| {
                let t0 = Instant::now();
                let bytes: usize = tiles.iter().map(|t| f(t).len()).sum();
                let n = tiles.len() as f64;
                (bytes as f64 / n / 1024.0, t0.elapsed().as_secs_f64() * 1e6 / n)
            };
            let raw = tiles.iter().map(Vec::len).sum::<usize>() as f64 / tiles.len() as f64 / 1024.0;
            let served = measure(&|t| onemap::tiles::cache::gzip(t));
            let (fast, default) = (measure(&|t| zlib(t, 1)), measure(&|t| zlib(t, 6)));
            println!(
                "| {layer} | {z} | {} | {raw:.1} | {:.1}, {:.0} | {:.1}, {:.0} | {:.1}, {:.0} |",
                tiles.len(),
                served.0,
                served.1,
                fast.0,
                fast.1,
                default.0,
                default.1
            );
        }
    }

    if let Some(path) = args.get(3) {
        std::fs::write(path, urls.join("\n") + "\n").expect("write the URL list");
        eprintln!("{} tile paths written to {path}", urls.len());
    }
}
