//! Batch locate with `fields` on both stores: each point's codes as asked, the same codes the
//! whole-location answer gives, null outside every grid, and bad field lists refused.

mod common;

use common::*;
use geo::InteriorPoint;
use serde_json::{Value, json};

#[tokio::test]
async fn compact_batches_carry_only_the_codes_asked_on_both_stores() {
    let city = small_city();
    let mut points: Vec<[f64; 2]> = city
        .grids
        .iter()
        .step_by(7)
        .map(|g| {
            let p = g.geom.interior_point().unwrap();
            [p.x(), p.y()]
        })
        .collect();
    points.push([100.0, 10.0]);
    for (label, st) in both_stores("locate_fields", city).await {
        let app = onemap::app(st.with_public_read());
        let full = post_json(&app, "/api/v1/locate", &json!({"crs": "cgcs2000", "points": points})).await.json();
        let fields = ["grid", "community", "street", "district", "responsible"];
        let r =
            post_json(&app, "/api/v1/locate", &json!({"crs": "cgcs2000", "points": points, "fields": fields})).await;
        assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
        let compact = r.json();
        let (a, b) = (full["results"].as_array().unwrap(), compact["results"].as_array().unwrap());
        assert_eq!(a.len(), b.len());
        for (f, c) in a.iter().zip(b) {
            if f.is_null() {
                assert!(c.is_null(), "{label}: outside every grid");
                continue;
            }
            let code = |v: &Value| v["code"].clone();
            assert_eq!(c["grid"], code(&f["grid"]));
            assert_eq!(c["community"], code(&f["community"]));
            assert_eq!(c["street"], code(&f["street"]));
            assert_eq!(c["district"], code(&f["district"]));
            let depts: Vec<Value> =
                f["responsible"].as_array().unwrap().iter().map(|r| r["dept_code"].clone()).collect();
            assert_eq!(c["responsible"], json!(depts));
            assert_eq!(c.as_object().unwrap().len(), 5, "{label}: only the fields asked");
        }
        assert!(b.last().unwrap().is_null());
        // Only the grid: a few bytes a point, in the order asked.
        let grid_only =
            post_json(&app, "/api/v1/locate", &json!({"crs": "cgcs2000", "points": points, "fields": ["grid"]})).await;
        let text = String::from_utf8_lossy(&grid_only.body).to_string();
        assert!(text.starts_with("{\"results\":[{\"grid\":\""), "{label}: {}", &text[..60.min(text.len())]);
        assert!(grid_only.body.len() < compact.to_string().len() && grid_only.body.len() * 5 < full.to_string().len());
        let g = grid_only.json();
        assert_eq!(g["results"][0], json!({"grid": b[0]["grid"]}));
        let both =
            post_json(&app, "/api/v1/locate", &json!({"points": [[0.0, 0.0]], "fields": ["street", "grid", "street"]}))
                .await;
        assert_eq!(both.json()["results"], json!([null]));
        // Bad field lists change nothing and say why.
        for bad in [json!([]), json!(["grid", "house"]), json!("grid")] {
            let r = post_json(&app, "/api/v1/locate", &json!({"points": points, "fields": bad})).await;
            r.problem(400);
        }
    }
}
