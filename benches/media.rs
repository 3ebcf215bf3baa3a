//! Case photos as phones send them: 4,000 x 3,000 JPEGs (12 megapixels, about 4 MB with EXIF time
//! and place).
//! - inspect: sniff, decode, read EXIF and draw the 320 px thumbnail (the CPU of an upload);
//! - upload: `POST /api/v1/cases/{id}/media` through the router, stored in a directory media
//!   store and a GeoPackage store (inspect, both objects written, the row and its change
//!   committed, the change applied).
//!
//! Run: `cargo bench --bench media`

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use onemap::media::{Photos, Settings, photo};
use rand::{Rng, SeedableRng};
use tower::ServiceExt;

/// A 4,000 x 3,000 photo with texture enough to weigh what a phone's does.
fn phone_photo() -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        let n: u8 = rng.random_range(0..48);
        image::Rgb([((x / 7) % 200) as u8 + n, ((y / 5) % 180) as u8 + n, (((x + y) / 11) % 160) as u8 + n])
    });
    photo::stamp(
        &image::DynamicImage::ImageRgb8(img),
        chrono::Utc::now(),
        Some((106.55, 29.56)),
        onemap::model::city_tz(),
    )
}

fn bench(c: &mut Criterion) {
    let jpeg = phone_photo();
    eprintln!("photo: 4000 x 3000, {:.1} MB", jpeg.len() as f64 / 1e6);
    let mut g = c.benchmark_group("media");
    g.sample_size(20);
    g.bench_function("inspect 4000x3000 jpeg", |b| {
        b.iter(|| black_box(photo::inspect(&jpeg, onemap::model::city_tz()).expect("a photo")))
    });

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, case, token) = rt.block_on(async {
        let store_path = dir.path().join("bench.gpkg").display().to_string();
        let mut p = onemap::demo::DemoParams::shigatse();
        p.components = 0;
        p.sensors = 0;
        p.cases = 100;
        let city = onemap::demo::generate(&p);
        let store = onemap::store::open(&store_path).await.unwrap();
        store.write_city(&city, &|_, _| {}).await.unwrap();
        store.close().await;
        let media = dir.path().join("media").display().to_string();
        let st = onemap::server::start(&store_path, false, 0).await.unwrap();
        let st = st.with_media(Photos::new(onemap::media::open(&media).unwrap(), media), Settings::default());
        let token = onemap::auth::create(&*st.store, onemap::auth::Role::Admin, None, None).await.unwrap();
        let case = st.index.cases.read().iter().next().unwrap().id;
        (onemap::app(st), case, token)
    });
    let boundary = "bench-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&jpeg);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let body = bytes::Bytes::from(body);
    g.bench_function("upload 4000x3000 jpeg (gpkg, directory)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = Request::post(format!("/api/v1/cases/{case}/media"))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                    .body(Body::from(body.clone()))
                    .unwrap();
                let r = app.clone().oneshot(req).await.unwrap();
                assert_eq!(r.status(), 201);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
