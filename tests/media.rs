//! Case photos through the real router on both stores, kept in a directory and in a real
//! S3-protocol bucket: upload and what EXIF says (time, place, distance, flags), the type read from
//! the bytes (415 whatever the name says), 413, 422, the roles and departments that may add and
//! see photos, thumbnails, the photo rule on handle and check_pass, Open311 with a photo, the
//! orphan sweep, and an unreachable bucket leaving no row. Also `serve --media s3://...`.

mod common;

use chrono::{Duration, Utc};
use common::s3::S3Server;
use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, create};
use onemap::media::{Photos, Settings, photo};
use serde_json::{Value, json};

fn picture(w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, ((x + y) % 256) as u8])
    }))
}

/// A phone photo taken now at (lon, lat).
fn jpeg_at(lon: f64, lat: f64) -> Vec<u8> {
    photo::stamp(&picture(1200, 900), Utc::now(), Some((lon, lat)), onemap::model::city_tz())
}

fn rules() -> Settings {
    Settings { max_bytes: 400_000, require_photo: vec!["handle".into(), "check_pass".into()], ..Settings::default() }
}

async fn upload(app: &axum::Router, case: i64, token: Option<&str>, step: Option<&str>, bytes: &[u8]) -> Resp {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("file", Some("photo.jpg"), bytes)];
    if let Some(s) = step {
        parts.push(("step", None, s.as_bytes()));
    }
    post_multipart(app, &format!("/api/v1/cases/{case}/media"), token, &parts).await
}

async fn act(app: &axum::Router, token: &str, case: &Value, action: &str, dept: &str) -> Resp {
    let body = json!({"action": action, "expected_version": case["version"], "dept_code": dept});
    post_as(app, &format!("/api/v1/cases/{}/actions", case["id"]), Some(token), body.to_string().into_bytes()).await
}

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

/// The whole photo story on one server: `objects` counts what the media store holds.
async fn photo_story(label: &str, st: onemap::AppState, objects: &dyn Fn() -> usize) {
    let city = small_city();
    let app = onemap::app(st.clone());
    let store = &*st.store;
    let admin = create(store, Role::Admin, None, None).await.unwrap();
    let supervisor = create(store, Role::Supervisor, None, None).await.unwrap();
    let viewer = create(store, Role::Viewer, None, None).await.unwrap();
    let dept = city.departments[0].code.to_string();
    let other_dept = city.departments[1].code.to_string();
    let department = create(store, Role::Department, Some(&dept), None).await.unwrap();
    let stranger = create(store, Role::Department, Some(&other_dept), None).await.unwrap();
    let p = city.grids[3].geom.interior_point().unwrap();
    let body = json!({"class_code": city.event_classes[0].code, "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
        "description": "照片测试", "source": "supervisor"});
    let r = post_as(&app, "/api/v1/cases", Some(&supervisor), body.to_string().into_bytes()).await;
    assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
    let mut case = r.json();
    let id = case["id"].as_i64().unwrap();

    // The report photo, taken where the case is.
    let near = jpeg_at(p.x(), p.y());
    let r = upload(&app, id, Some(&supervisor), None, &near).await;
    assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
    let m = r.json();
    assert_eq!((m["step"].as_str(), m["content_type"].as_str()), (Some("report"), Some("image/jpeg")), "{label}");
    assert_eq!(
        (m["width"].as_i64(), m["height"].as_i64(), m["bytes"].as_u64()),
        (Some(1200), Some(900), Some(near.len() as u64))
    );
    assert!(m["distance_m"].as_f64().unwrap() < 1.0, "{label}: {m}");
    assert_eq!((m["far"].as_bool(), m["flags"].clone()), (Some(false), json!([])), "{label}");
    assert!((m["lon"].as_f64().unwrap() - p.x()).abs() < 1e-5, "{label}");
    let taken = chrono::DateTime::parse_from_rfc3339(m["taken_at"].as_str().unwrap()).unwrap();
    assert!((Utc::now() - taken.with_timezone(&Utc)).num_seconds().abs() < 60, "{label}: {taken}");
    let seq: i64 = r.headers["onemap-seq"].to_str().unwrap().parse().unwrap();
    let logged = store.changes_after(seq - 1, 1).await.unwrap();
    assert_eq!(logged[0].row.event.as_deref(), Some("case.media"), "{label}: the feed hears of the photo");

    // The bytes back, and the thumbnail.
    let url = m["url"].as_str().unwrap();
    let got = get_as(&app, url, &viewer).await;
    assert_eq!((got.status.as_u16(), got.content_type()), (200, "image/jpeg"), "{label}");
    assert_eq!(got.body, near, "{label}: the photo as uploaded");
    let thumb = get_as(&app, m["thumbnail_url"].as_str().unwrap(), &viewer).await;
    assert_eq!(thumb.content_type(), "image/jpeg");
    let t = image::load_from_memory(&thumb.body).unwrap();
    assert_eq!((t.width(), t.height()), (320, 240), "{label}");

    // Far from the case: flagged. A PNG without EXIF: no place, no time.
    let far = jpeg_at(p.x(), p.y() + 0.01);
    let m2 = upload(&app, id, Some(&supervisor), Some("report"), &far).await.json();
    assert!(m2["distance_m"].as_f64().unwrap() > 1000.0, "{label}: {m2}");
    assert_eq!((m2["far"].as_bool(), m2["flags"].clone()), (Some(true), json!(["far"])), "{label}");
    let mut png = Vec::new();
    picture(64, 48).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let m3 = upload(&app, id, Some(&admin), None, &png).await.json();
    assert_eq!((m3["content_type"].as_str(), m3["flags"].clone()), (Some("image/png"), json!(["no_place", "no_time"])));
    let stored = objects();
    assert_eq!(stored, 6, "{label}: two objects per photo");

    // Refusals change nothing.
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    upload(&app, id, Some(&supervisor), None, gif).await.problem(415);
    upload(&app, id, Some(&supervisor), None, b"<html>not a photo</html>").await.problem(415);
    let mut big = near.clone();
    big.resize(400_001, 0);
    upload(&app, id, Some(&supervisor), None, &big).await.problem(413);
    upload(&app, id, Some(&supervisor), None, &near[..near.len() / 2]).await.problem(422);
    upload(&app, id, Some(&supervisor), Some("selfie"), &near).await.problem(400);
    upload(&app, id, Some(&viewer), None, &near).await.problem(403);
    upload(&app, id, Some(&supervisor), Some("handle"), &near).await.problem(403);
    upload(&app, id, None, None, &near).await.problem(401);
    upload(&app, 999_999_999, Some(&supervisor), None, &near).await.problem(404);
    post_multipart(&app, &format!("/api/v1/cases/{id}/media"), Some(&supervisor), &[("step", None, b"report")])
        .await
        .problem(400);
    assert_eq!(objects(), stored, "{label}: refused photos leave no object");
    let listed = get_as(&app, &format!("/api/v1/cases/{id}"), &viewer).await.json();
    assert_eq!(listed["media"].as_array().unwrap().len(), 3, "{label}: GET case lists its photos");
    assert_eq!(listed["media"][0]["id"], m["id"]);

    // Through the workflow: a department handles with its after-photo, the supervisor checks
    // with a photo; each rule refuses the step without one.
    for a in ["accept", "file", "dispatch"] {
        let r = act(&app, &admin, &case, a, &dept).await;
        assert_eq!(r.status, 200, "{label} {a}: {}", String::from_utf8_lossy(&r.body));
        case = r.json();
    }
    // Another department neither sees nor adds photos of the case.
    get_as(&app, url, &stranger).await.problem(403);
    get_as(&app, &format!("/api/v1/cases/{id}/media"), &stranger).await.problem(403);
    upload(&app, id, Some(&stranger), None, &near).await.problem(403);
    let refused = act(&app, &department, &case, "handle", &dept).await.problem(422);
    assert_eq!(refused["type"], "/problems/photo-required", "{label}");
    let r = upload(&app, id, Some(&department), None, &near).await;
    assert_eq!(r.json()["step"], "handle", "{label}: a department's photo is its after-photo");
    assert_eq!(get_as(&app, url, &department).await.status, 200, "{label}: the department sees its case's photos");
    let r = act(&app, &department, &case, "handle", &dept).await;
    assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
    case = r.json();
    act(&app, &supervisor, &case, "check_pass", &dept).await.problem(422);
    let r = upload(&app, id, Some(&supervisor), None, &near).await;
    assert_eq!(r.json()["step"], "check", "{label}: a supervisor's photo of a handled case is the check");
    assert_eq!(act(&app, &supervisor, &case, "check_pass", &dept).await.status, 200, "{label}");

    // Orphans (an upload that died between its objects and its row) are swept; photos stay.
    let photos = st.media.clone();
    assert_eq!(photos.sweep(store, Duration::zero()).await.unwrap(), 0, "{label}: every object has its row");
    assert_eq!(objects(), 10);
}

#[tokio::test]
async fn photos_in_a_directory_on_both_stores() {
    for (label, st) in both_stores("media", small_city()).await {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().display().to_string();
        let photos = Photos::new(onemap::media::open(&location).unwrap(), location.clone());
        let st = st.with_media(photos, rules());
        let path = dir.path().to_path_buf();
        photo_story(label, st.clone(), &|| files_under(&path)).await;
        // A file no row names, older than the grace: swept.
        let orphan = dir.path().join("cases/123/0000deadbeef.jpg");
        std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        std::fs::write(&orphan, b"left by a crash").unwrap();
        assert_eq!(st.media.sweep(&*st.store, Duration::zero()).await.unwrap(), 1, "{label}");
        assert!(!orphan.exists());
        // Too young to be sure: kept.
        std::fs::write(&orphan, b"an upload in flight").unwrap();
        assert_eq!(st.media.sweep(&*st.store, Duration::minutes(60)).await.unwrap(), 0);
        assert!(orphan.exists());
    }
}

#[tokio::test]
async fn photos_in_an_s3_bucket() {
    let mut s3 = S3Server::start();
    s3.bucket("onemap-photos").await;
    // moto signs nothing, but the client signs with whatever it is given.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    let location = format!("s3://onemap-photos/city?endpoint={}", s3.endpoint());
    let st = seeded_state(&fresh_pg("onemap_t_media_s3").await, small_city()).await;
    let st = st.with_media(Photos::new(onemap::media::open(&location).unwrap(), location.clone()), rules());
    let endpoint = s3.endpoint();
    let count = move || {
        // The bucket's keys under the prefix, through the S3 protocol itself.
        let body = std::process::Command::new("curl")
            .args(["-s", &format!("{endpoint}/onemap-photos?list-type=2&prefix=city/")])
            .output()
            .unwrap()
            .stdout;
        String::from_utf8_lossy(&body).matches("<Key>").count()
    };
    photo_story("s3", st.clone(), &count).await;

    // The bucket gone: the upload fails with 503 and leaves no row.
    let app = onemap::app(st.clone());
    let admin = create(&*st.store, Role::Admin, None, None).await.unwrap();
    let case = st.index.cases.read().iter().next().unwrap().clone();
    let before = st.media.of_case(&*st.store, case.id).await.unwrap().len();
    s3.stop();
    upload(&app, case.id, Some(&admin), Some("report"), &jpeg_at(case.geom.x(), case.geom.y())).await.problem(503);
    assert_eq!(st.media.of_case(&*st.store, case.id).await.unwrap().len(), before);
}

#[tokio::test]
async fn open311_requests_carry_their_photo() {
    let city = small_city();
    let st = seeded_state(&fresh_gpkg("media_open311"), city).await;
    let app = onemap::app(st.clone());
    let key = create(&*st.store, Role::Public, None, None).await.unwrap();
    let other_key = create(&*st.store, Role::Public, None, None).await.unwrap();
    let p = city.grids[5].geom.interior_point().unwrap();
    let photo = jpeg_at(p.x(), p.y());
    let (lat, lon) = (p.y().to_string(), p.x().to_string());
    let service = city.event_classes[0].code.to_string();
    let fields = |extra: Vec<(&'static str, Option<&'static str>, Vec<u8>)>| {
        let mut v: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
            ("api_key", None, key.clone().into_bytes()),
            ("service_code", None, service.clone().into_bytes()),
            ("lat", None, lat.clone().into_bytes()),
            ("long", None, lon.clone().into_bytes()),
            ("description", None, "井盖破损".as_bytes().to_vec()),
        ];
        v.extend(extra);
        v
    };
    let post = |parts: Vec<(&'static str, Option<&'static str>, Vec<u8>)>| {
        let app = app.clone();
        async move {
            let refs: Vec<(&str, Option<&str>, &[u8])> = parts.iter().map(|(n, f, b)| (*n, *f, b.as_slice())).collect();
            post_multipart(&app, "/open311/v2/requests.json", None, &refs).await
        }
    };
    let cases_before = st.index.cases.read().len();
    post(fields(vec![("media", Some("x.jpg"), b"GIF89a-not-a-photo".to_vec())])).await.problem(415);
    let mut url_form = fields(vec![]);
    url_form.push(("media_url", None, b"http://10.0.0.1/secret.jpg".to_vec()));
    post(url_form).await.problem(422);
    assert_eq!(st.index.cases.read().len(), cases_before, "a refused photo leaves no case");

    let r = post(fields(vec![("media", Some("photo.jpg"), photo.clone())])).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()[0]["service_request_id"].as_str().unwrap().to_string();
    let req = get_as(&app, &format!("/open311/v2/requests/{id}.json"), &key).await.json();
    let media_url = req[0]["media_url"].as_str().expect("media_url").to_string();
    assert!(media_url.starts_with("http://127.0.0.1:8080/open311/v2/requests/"), "{media_url}");
    let path = media_url.trim_start_matches("http://127.0.0.1:8080");
    let got = get_as(&app, path, &key).await;
    assert_eq!((got.status.as_u16(), got.body == photo), (200, true), "the reporter sees the photo");
    get_as(&app, path, &other_key).await.problem(404);
    let listed = get_as(&app, "/open311/v2/requests.json", &key).await.json();
    assert_eq!(listed[0]["media_url"].as_str(), Some(media_url.as_str()));
}

#[tokio::test]
async fn serve_keeps_photos_where_media_says() {
    let s3 = S3Server::start();
    s3.bucket("served").await;
    let store = fresh_gpkg("media_serve");
    let seeded = onemap::store::open(&store).await.unwrap();
    seeded.write_city(small_city(), &|_, _| {}).await.unwrap();
    seeded.close().await;
    let admin = token_cli(&store, "admin");
    let media = format!("s3://served?endpoint={}", s3.endpoint());
    let (mut child, base) = {
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        }
        serve(&["--store", &store, "--media", &media])
    };
    let case = small_city().cases.iter().find(|c| !c.status.is_finished()).unwrap();
    let (kind, body) = multipart(&[("file", Some("p.jpg"), &jpeg_at(case.geom.x(), case.geom.y()))]);
    let client = reqwest::Client::new();
    let cases: Value = client
        .get(format!("{base}/api/v1/cases?limit=1&status={}", case.status))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = cases["cases"][0]["id"].as_i64().unwrap();
    let r = client
        .post(format!("{base}/api/v1/cases/{id}/media"))
        .bearer_auth(&admin)
        .header("content-type", kind)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let listing =
        client.get(format!("{}/served?list-type=2", s3.endpoint())).send().await.unwrap().text().await.unwrap();
    assert_eq!(listing.matches("<Key>cases/").count(), 2, "{listing}");
    let _ = child.kill();
    let _ = child.wait();
}
