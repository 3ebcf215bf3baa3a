//! What the load examples ask the server under test before they start. Each example compiles
//! this module on its own and uses only some of it.
#![allow(dead_code)]

use serde_json::Value;

/// The centres of the first `n` unit grids (reports spread over the city as they do in life,
/// rather than piling up on one spot) and an event class to report, from the server itself.
pub async fn report_targets(client: &reqwest::Client, url: &str, n: usize) -> (Vec<(f64, f64)>, String) {
    let get = |path: String| async move { client.get(path).send().await.unwrap().json::<Value>().await.unwrap() };
    let grids = get(format!("{url}/collections/grids/items?limit={n}")).await;
    let points = grids["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
            let n = ring.len() - 1;
            let x = ring[..n].iter().map(|p| p[0].as_f64().unwrap()).sum::<f64>() / n as f64;
            let y = ring[..n].iter().map(|p| p[1].as_f64().unwrap()).sum::<f64>() / n as f64;
            (x, y)
        })
        .collect();
    let services = get(format!("{url}/open311/v2/services.json")).await;
    (points, services[0]["service_code"].as_str().unwrap().to_string())
}

/// A GET answered with JSON, as `token`.
pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client.get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap()
}

/// The codes of the registered sensors the items query `filter` (e.g. `kind=water_level`) picks.
pub async fn sensor_codes(client: &reqwest::Client, url: &str, token: &str, filter: &str) -> Vec<String> {
    let sensors = get_json(client, &format!("{url}/collections/sensors/items?limit=10000&{filter}"), token).await;
    sensors["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["code"].as_str().unwrap().to_string())
        .collect()
}
