//! Load test for batch `POST /api/v1/locate` end to end over HTTP, and the same lookup done by
//! PostGIS (`ST_Intersects` join over the GiST index) on the same points, in the same run.
//!
//! Usage (see scripts/bench-locate):
//!   cargo run --release --example locate_load -- URL PG_URL [BATCHES] [BATCH_SIZE] [CONCURRENCY] [FIELDS]
//! FIELDS (e.g. `grid`, or `grid,street`) asks for the compact answer of those codes only.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let pg = args.get(2).cloned();
    let batches: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let concurrency: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(2);
    let fields: Option<Vec<String>> = args.get(6).map(|f| f.split(',').map(str::to_string).collect());

    let client = reqwest::Client::new();
    let col: serde_json::Value = client.get(format!("{url}/collections/grids")).send().await?.json().await?;
    let b: Vec<f64> = col["extent"]["spatial"]["bbox"][0]
        .as_array()
        .ok_or("no grid extent")?
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let sets: Vec<Vec<[f64; 2]>> = (0..batches)
        .map(|_| (0..size).map(|_| [rng.random_range(b[0]..b[2]), rng.random_range(b[1]..b[3])]).collect())
        .collect();
    let bodies: Vec<Vec<u8>> = sets
        .iter()
        .map(|pts| {
            let mut body = serde_json::json!({"crs": "cgcs2000", "points": pts});
            if let Some(f) = &fields {
                body["fields"] = serde_json::json!(f);
            }
            serde_json::to_vec(&body).unwrap()
        })
        .collect();

    // Warm up once, then measure.
    client
        .post(format!("{url}/api/v1/locate"))
        .header("content-type", "application/json")
        .body(bodies[0].clone())
        .send()
        .await?
        .bytes()
        .await?;
    let t = Instant::now();
    let mut located = 0usize;
    let mut bytes = 0usize;
    for chunk in bodies.chunks(concurrency) {
        let futs = chunk.iter().map(|body| {
            let client = client.clone();
            let url = url.clone();
            let body = body.clone();
            async move {
                let resp = client
                    .post(format!("{url}/api/v1/locate"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                assert!(resp.status().is_success(), "HTTP {}", resp.status());
                // Count located points without building a 50 MB JSON tree: the client must not be
                // the bottleneck on the same two cores.
                let body = resp.bytes().await?;
                Ok::<(usize, usize), reqwest::Error>((count(&body, b"{\"grid\":"), body.len()))
            }
        });
        for r in futures::future::join_all(futs).await {
            let (n, b) = r?;
            located += n;
            bytes += b;
        }
    }
    let http_s = t.elapsed().as_secs_f64();
    let total = batches * size;
    let http_rate = total as f64 / http_s;
    println!(
        "http: {total} points in {http_s:.2} s = {http_rate:.0} points/s ({located} in a grid), batch {size}, concurrency {concurrency}, fields {}, {:.1} MB a batch ({:.0} bytes a point)",
        fields.as_ref().map_or("all".to_string(), |f| f.join(",")),
        bytes as f64 / batches as f64 / 1e6,
        bytes as f64 / total as f64
    );

    if let Some(pg) = pg {
        let pool = PgPoolOptions::new().max_connections(concurrency as u32).connect(&pg).await?;
        let sql = "SELECT p.i, g.code FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS p(lon, lat, i) \
             LEFT JOIN LATERAL (SELECT code FROM grids WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4490)) \
             ORDER BY code LIMIT 1) g ON true ORDER BY p.i";
        let t = Instant::now();
        let mut pg_located = 0usize;
        for chunk in sets.chunks(concurrency) {
            let futs = chunk.iter().map(|pts| {
                let pool = pool.clone();
                let lons: Vec<f64> = pts.iter().map(|p| p[0]).collect();
                let lats: Vec<f64> = pts.iter().map(|p| p[1]).collect();
                async move {
                    let rows: Vec<(i64, Option<String>)> =
                        sqlx::query_as(sql).bind(lons).bind(lats).fetch_all(&pool).await?;
                    Ok::<usize, sqlx::Error>(rows.iter().filter(|r| r.1.is_some()).count())
                }
            });
            for r in futures::future::join_all(futs).await {
                pg_located += r?;
            }
        }
        let pg_s = t.elapsed().as_secs_f64();
        let pg_rate = total as f64 / pg_s;
        println!("postgis: {total} points in {pg_s:.2} s = {pg_rate:.0} points/s ({pg_located} in a grid)");
        println!("ratio http/postgis: {:.1}x", http_rate / pg_rate);
        assert_eq!(located, pg_located, "the index and PostGIS disagree");
    }
    Ok(())
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    memchr::memmem::find_iter(hay, needle).count()
}
