//! The OpenAPI 3.0 description of the whole HTTP surface (`GET /api`): QGIS and GDAL read the
//! Features part (the `limit` bounds), integrators read the rest, and the contract test runs
//! schemathesis against it (every operation, no 5xx, answers that match their schemas).
//!
//! Enumerations come from the enums and tables the handlers parse with, so the document cannot
//! name a collection, action, status or sensor kind the server does not know.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::analysis::Method;
use crate::analysis::emerging::Step;
use crate::auth::ROLES;
use crate::index::query::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::model::{Action, Collection, Level, StaffRole, Status};
use crate::store::evaluation::By;

/// `GET /api`.
pub async fn openapi(State(st): State<super::AppState>, headers: HeaderMap) -> Response {
    let body = document(&super::features::base_url(&headers), example_point(&st));
    ([(header::CONTENT_TYPE, "application/vnd.oai.openapi+json;version=3.0")], body.to_string()).into_response()
}

/// A point inside one of the city's unit grids, for the examples: whichever city is loaded,
/// a client trying an example reaches real data.
fn example_point(st: &super::AppState) -> Option<(f64, f64)> {
    use geo::InteriorPoint;
    let grids = st.index.grids.read();
    let p = grids.iter().next()?.geom.interior_point()?;
    Some((p.x(), p.y()))
}

/// The document, with `base` as its one server and examples at `example` (lon, lat).
pub fn document(base: &str, example: Option<(f64, f64)>) -> Value {
    let mut paths = Map::new();
    for (path, method, op) in operations(example) {
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "onemap",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One map of a city's unit grids, components, cases and sensors \
                (城市运行管理服务平台 一张图): OGC API - Features, vector tiles, locate, the case \
                workflow, sensors and alarms, analyses, exports and Open311. Every read needs a bearer \
                token unless the server runs with --public-read; a department token sees only its \
                department's cases, an area token only its district's or street's.",
        },
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "service"}, {"name": "features"}, {"name": "tiles"}, {"name": "locate"},
            {"name": "cases"}, {"name": "sensors"}, {"name": "staff"}, {"name": "linkage"}, {"name": "analysis"}, {"name": "export"},
            {"name": "open311"}, {"name": "feed"},
        ],
        "paths": paths,
        "components": components(),
    })
}

/// One operation: its id, tag, summary, parameters, request body and success answers. Every
/// operation may also answer a problem (4xx) and, while the store is away or this replica lags,
/// 503.
struct Op {
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    params: Vec<Value>,
    body: Option<Value>,
    ok: Vec<(&'static str, Value)>,
    public: bool,
}

impl Op {
    fn new(id: &'static str, tag: &'static str, summary: &'static str) -> Op {
        Op { id, tag, summary, params: vec![], body: None, ok: vec![], public: false }
    }
    fn params(mut self, p: impl IntoIterator<Item = Value>) -> Op {
        self.params.extend(p);
        self
    }
    fn body(mut self, media: &str, schema: Value) -> Op {
        self.body = Some(json!({"required": true, "content": {media: {"schema": schema}}}));
        self
    }
    /// Another media type the same body may come in.
    fn or_body(mut self, media: &str, schema: Value) -> Op {
        let body = self.body.as_mut().expect("a body to add to");
        body["content"][media] = json!({"schema": schema});
        self
    }
    /// An example of the request body, when there is one.
    fn body_example(mut self, example: Option<Value>) -> Op {
        if let (Some(body), Some(example)) = (self.body.as_mut(), example) {
            for media in body["content"].as_object_mut().expect("a body has content").values_mut() {
                media["example"] = example.clone();
            }
        }
        self
    }
    fn json_body(self, schema: Value) -> Op {
        self.body("application/json", schema)
    }
    /// A success answer `status` with `schema` in `media` (another media type of a status
    /// already listed adds to it).
    fn answers(mut self, status: &'static str, media: &str, schema: Value) -> Op {
        match self.ok.iter_mut().find(|(s, _)| *s == status) {
            Some((_, answer)) => answer["content"][media] = json!({"schema": schema}),
            None => self.ok.push((status, json!({"description": "success", "content": {media: {"schema": schema}}}))),
        }
        self
    }
    /// A file in one of `media`.
    fn files<'a>(mut self, media: impl IntoIterator<Item = &'a str>) -> Op {
        let binary = json!({"schema": {"type": "string", "format": "binary"}});
        let geojson = json!({"schema": reference("FeatureCollection")});
        let content: Map<String, Value> = media
            .into_iter()
            .map(|m| (m.to_string(), if m == "application/geo+json" { geojson.clone() } else { binary.clone() }))
            .collect();
        self.ok.push(("200", json!({"description": "the file", "content": content})));
        self
    }
    fn json(self, schema: Value) -> Op {
        self.answers("200", "application/json", schema)
    }
    /// A write: 201 with `schema` and the change-log position.
    fn created(mut self, schema: Value) -> Op {
        self.ok.push((
            "201",
            json!({"description": "created", "headers": {"Onemap-Seq": {"$ref": "#/components/headers/Seq"}},
                "content": {"application/json": {"schema": schema}}}),
        ));
        self
    }
    /// A link from the first success answer to operation `to`, its `param` taken from `expr`
    /// (so clients and schemathesis can follow a created case to its actions).
    fn link(mut self, to: &str, param: &str, expr: &str) -> Op {
        let (_, answer) = self.ok.first_mut().expect("links follow an answer");
        answer["links"][to] = json!({"operationId": to, "parameters": {param: expr}});
        self
    }
    fn no_content(mut self, description: &str) -> Op {
        self.ok.push(("204", json!({"description": description})));
        self
    }
    /// Readable without a token (health, discovery, the Open311 intake).
    fn public(mut self) -> Op {
        self.public = true;
        self
    }
    fn build(self) -> Value {
        let mut responses = Map::new();
        for (status, r) in self.ok {
            responses.insert(status.into(), r);
        }
        responses.insert("4XX".into(), json!({"$ref": "#/components/responses/Problem"}));
        responses.insert("503".into(), json!({"$ref": "#/components/responses/Problem"}));
        let mut op = json!({"operationId": self.id, "tags": [self.tag], "summary": self.summary,
            "parameters": self.params, "responses": responses});
        if let Some(b) = self.body {
            op["requestBody"] = b;
        }
        if self.public {
            op["security"] = json!([]);
        }
        op
    }
}

/// `?f=`: Mapbox Vector Tiles (the default) or MapLibre Tiles (also asked for with `Accept`).
fn tile_format() -> Value {
    query(
        "f",
        "tile encoding (default mvt; Accept: application/vnd.maplibre-tile also asks for mlt)",
        enumeration(["mvt", "mlt"]),
    )
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn required_query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": true, "description": description, "schema": schema})
}

fn path(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn param(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

/// `{tileMatrix}/{tileRow}/{tileCol}` of OGC API - Tiles.
fn tile_address() -> Vec<Value> {
    vec![
        path("tileMatrix", json!({"type": "string", "description": "the zoom, 0 to 24"})),
        path("tileRow", json!({"type": "integer", "minimum": 0})),
        path("tileCol", json!({"type": "integer", "minimum": 0})),
    ]
}

/// The analysis unit of hotspots and emerging hotspots.
fn unit_param() -> Value {
    query("unit", "grid, community, street, district or h3:<res>", string())
}

fn string() -> Value {
    json!({"type": "string"})
}

fn enumeration<'a>(names: impl IntoIterator<Item = &'a str>) -> Value {
    json!({"type": "string", "enum": names.into_iter().collect::<Vec<_>>()})
}

/// An optional body field: absent and `null` both mean "not given" (serde's `Option`).
fn optional(mut schema: Value) -> Value {
    if schema.get("$ref").is_some() {
        return json!({"allOf": [schema], "nullable": true});
    }
    schema["nullable"] = json!(true);
    // JSON Schema validators check `enum` before `nullable`: null must be one of the values.
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.push(Value::Null);
    }
    schema
}

/// Degrees in any of the accepted CRSs (projected input is refused).
fn lon() -> Value {
    json!({"type": "number", "minimum": -180, "maximum": 180})
}

fn lat() -> Value {
    json!({"type": "number", "minimum": -90, "maximum": 90})
}

fn date() -> Value {
    json!({"type": "string", "format": "date"})
}

/// An object with these required properties (others may follow).
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// The analyses' common parameters.
fn analysis_params() -> Vec<Value> {
    vec![
        query("layer", "the layer analysed", enumeration(["cases", "components"])),
        query("from", "start (RFC 3339 instant or YYYY-MM-DD city day)", string()),
        query("to", "end, inclusive for a date", string()),
        query("class_code", "only this class (大类 or 小类 code)", string()),
        query("bbox", "only inside minLon,minLat,maxLon,maxLat", string()),
    ]
}

fn operations(example: Option<(f64, f64)>) -> Vec<(String, &'static str, Value)> {
    let (lon_ex, lat_ex) = example.map_or((json!(null), json!(null)), |(x, y)| (json!(x), json!(y)));
    let with_example = |mut param: Value, value: &Value| {
        if !value.is_null() {
            param["example"] = value.clone();
        }
        param
    };
    let case_id = path("id", json!({"type": "integer", "format": "int64", "minimum": 1}));
    let collection = param("collectionId");
    let ops: Vec<(&str, &str, Op)> = vec![
        // Service.
        ("/health", "get", Op::new("health", "service", "Liveness and layer counts").public().json(object(
            &["status", "store", "layers"],
            json!({"status": string(), "store": enumeration(["gpkg", "postgis"]),
                "layers": {"type": "object", "additionalProperties": {"type": "integer"}}}),
        ))),
        ("/ready", "get", Op::new("ready", "service", "Readiness: the store answers and this replica keeps up")
            .public()
            .json(reference("Ready"))),
        ("/metrics", "get", Op::new("metrics", "service", "Prometheus metrics")
            .public()
            .answers("200", "application/openmetrics-text", string())),
        ("/api", "get", Op::new("getOpenAPI", "service", "This document").public().answers(
            "200",
            "application/vnd.oai.openapi+json;version=3.0",
            json!({"type": "object"}),
        )),
        // OGC API - Features.
        ("/", "get", Op::new("getLandingPage", "features", "Landing page").public().json(object(
            &["title", "links"],
            json!({"title": string(), "links": array_of(reference("Link"))}),
        ))),
        ("/conformance", "get", Op::new("getConformance", "features", "Conformance classes").public().json(
            object(&["conformsTo"], json!({"conformsTo": array_of(string())})),
        )),
        ("/collections", "get", Op::new("getCollections", "features", "Collections").json(object(
            &["collections", "links"],
            json!({"collections": array_of(reference("Collection")), "links": array_of(reference("Link"))}),
        ))),
        ("/collections/{collectionId}", "get", Op::new("describeCollection", "features", "One collection")
            .params([collection.clone()])
            .json(reference("Collection"))),
        ("/collections/{collectionId}/items", "get", Op::new("getFeatures", "features", "Features")
            .params([collection.clone(), param("limit"), param("offset"), param("bbox"), param("datetime"), param("crs")])
            .params([
                query("within", "WKT or GeoJSON polygon: features intersecting it", string()),
                query("near", "lon,lat: nearest first, with radius or k", string()),
                query("radius", "metres around near", json!({"type": "number", "minimum": 0})),
                query("k", "how many nearest", json!({"type": "integer", "minimum": 1})),
            ])
            .answers("200", "application/geo+json", reference("FeatureCollection"))),
        ("/collections/{collectionId}/items/{featureId}", "get", Op::new("getFeature", "features", "One feature")
            .params([collection.clone(), path("featureId", string()), param("crs")])
            .answers("200", "application/geo+json", reference("Feature"))),
        // Tiles.
        ("/tiles/{layers}", "get", Op::new("getTileJSON", "tiles", "TileJSON 3.0.0 of one or more layers")
            .params([
                path("layers", json!({"type": "string", "description": "collection ids joined by commas"})),
                tile_format(),
            ])
            .json(object(&["tilejson", "tiles", "vector_layers"], json!({"tilejson": string(),
                "tiles": array_of(string()), "minzoom": {"type": "integer"}, "maxzoom": {"type": "integer"},
                "vector_layers": array_of(object(&["id"], json!({"id": string()})))})))),
        ("/tiles/{layers}/{z}/{x}/{y}", "get", Op::new("getTile", "tiles", "A Mapbox Vector Tile")
            .params([
                path("layers", json!({"type": "string", "description": "collection ids joined by commas"})),
                path("z", json!({"type": "integer", "minimum": 0, "maximum": 24})),
                path("x", json!({"type": "integer", "minimum": 0})),
                path("y", json!({"type": "string", "description": "row, optionally with .mvt or .pbf"})),
                tile_format(),
            ])
            .answers("200", "application/vnd.mapbox-vector-tile", json!({"type": "string", "format": "binary"}))
            .answers("200", super::tiles::MLT_TYPE, json!({"type": "string", "format": "binary"}))
            .no_content("an empty tile")),
        // OGC API - Tiles.
        ("/tileMatrixSets", "get", Op::new("getTileMatrixSets", "tiles", "The tiling schemes (WebMercatorQuad)")
            .json(object(&["tileMatrixSets"], json!({"tileMatrixSets": array_of(object(&["id"], json!({"id": string()})))})))),
        ("/tileMatrixSets/{tileMatrixSetId}", "get", Op::new("getTileMatrixSet", "tiles", "A tiling scheme's definition (OGC 2D TMS 2.0)")
            .params([path("tileMatrixSetId", enumeration([super::ogc_tiles::TMS]))])
            .json(object(&["id", "crs", "tileMatrices"], json!({"id": string(), "crs": string(),
                "tileMatrices": array_of(json!({"type": "object"}))})))),
        ("/tiles", "get", Op::new("getDatasetTilesets", "tiles", "The vector tilesets of the whole dataset")
            .json(reference("Tilesets"))),
        ("/tiles/WebMercatorQuad", "get", Op::new("getDatasetTileset", "tiles", "The dataset tileset: every feature collection, a layer each")
            .json(reference("Tileset"))),
        ("/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}", "get", Op::new("getDatasetTile", "tiles", "A tile of the dataset tileset")
            .params(tile_address())
            .answers("200", "application/vnd.mapbox-vector-tile", json!({"type": "string", "format": "binary"}))
            .no_content("an empty tile")),
        ("/collections/{collectionId}/tiles", "get", Op::new("getCollectionTilesets", "tiles", "A collection's vector tilesets")
            .params([param("collectionId")])
            .json(reference("Tilesets"))),
        ("/collections/{collectionId}/tiles/{tileMatrixSetId}", "get", Op::new("getCollectionTileset", "tiles", "A collection's tileset metadata with the limits of its data")
            .params([param("collectionId"), path("tileMatrixSetId", enumeration([super::ogc_tiles::TMS]))])
            .json(reference("Tileset"))),
        ("/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}", "get", Op::new("getCollectionTile", "tiles", "A tile of a collection (the same as /tiles/{collectionId}/{z}/{x}/{y})")
            .params([param("collectionId"), path("tileMatrixSetId", enumeration([super::ogc_tiles::TMS]))])
            .params(tile_address())
            .answers("200", "application/vnd.mapbox-vector-tile", json!({"type": "string", "format": "binary"}))
            .no_content("an empty tile")),
        // Locate.
        ("/api/v1/locate", "get", Op::new("locate", "locate", "The unit grid, community, street, district and responsible departments of a point")
            .params([
                with_example(required_query("lon", "longitude", lon()), &lon_ex),
                with_example(required_query("lat", "latitude", lat()), &lat_ex),
                param("crs"),
            ])
            .json(reference("Location"))),
        ("/api/v1/locate", "post", Op::new("locateBatch", "locate", "Locate up to 100,000 points")
            .json_body(object(&["points"], json!({
                "crs": optional(string()),
                "points": {"type": "array", "maxItems": super::locate::MAX_BATCH,
                    "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}}},
                "fields": optional(json!({"type": "array", "minItems": 1,
                    "items": enumeration(["grid", "community", "street", "district", "responsible"])})),
            })))
            .json(object(&["results"], json!({"results": array_of(json!({"type": "object", "nullable": true}))})))),
        // Cases.
        ("/api/v1/cases", "get", Op::new("listCases", "cases", "The latest cases, newest first")
            .params([query("limit", "how many", json!({"type": "integer", "minimum": 1, "maximum": 1000}))])
            .json(object(&["cases"], json!({"cases": array_of(reference("Case"))})))),
        ("/api/v1/cases", "post", Op::new("reportCase", "cases", "Report a case (上报)")
            .json_body(reference("NewCase"))
            .body_example(example.map(|(x, y)| json!({
                "class_code": "0110", "lon": x, "lat": y, "description": "道路旁有暴露垃圾", "source": "supervisor"})))
            .created(reference("Case"))
            .link("getCase", "id", "$response.body#/id")
            .link("actOnCase", "id", "$response.body#/id")),
        ("/api/v1/cases/summary", "get", Op::new("caseSummary", "cases", "Counters for the big screen").json(
            object(&["open", "overdue", "today"], json!({"open": {"type": "integer"}, "overdue": {"type": "integer"},
                "today": {"type": "integer"}, "closure_rate_month": {"type": "number", "nullable": true}})),
        )),
        ("/api/v1/cases/{id}", "get", Op::new("getCase", "cases", "A case with its history")
            .params([case_id.clone()])
            .json(reference("Case"))),
        ("/api/v1/cases/{id}/media", "post", Op::new("addCasePhoto", "cases", "Add a photo (JPEG, PNG or WebP) to a case")
            .params([case_id.clone()])
            .body("multipart/form-data", object(&["file"], json!({
                "file": {"type": "string", "format": "binary"},
                "step": enumeration(crate::model::MediaStep::ALL.iter().map(|s| s.as_str())),
            })))
            .created(reference("Media"))),
        ("/api/v1/cases/{id}/media", "get", Op::new("listCasePhotos", "cases", "A case's photos, oldest first")
            .params([case_id.clone()])
            .json(object(&["media"], json!({"media": array_of(reference("Media"))})))),
        ("/api/v1/cases/{id}/media/{mid}", "get", Op::new("getCasePhoto", "cases", "A case photo as uploaded")
            .params([case_id.clone(), path("mid", string())])
            .files(["image/jpeg", "image/png", "image/webp"])),
        ("/api/v1/cases/{id}/media/{mid}/thumbnail", "get", Op::new("getCasePhotoThumbnail", "cases", "A case photo's thumbnail (JPEG, at most 320 px)")
            .params([case_id.clone(), path("mid", string())])
            .files(["image/jpeg"])),
        ("/api/v1/cases/{id}/actions", "post", Op::new("actOnCase", "cases", "Take a workflow step")
            .params([case_id.clone()])
            .json_body(object(&["action", "expected_version"], json!({
                "action": enumeration(Action::ALL.iter().map(|a| a.as_str())),
                "expected_version": {"type": "integer"},
                "note": optional(string()),
                "dept_code": optional(string()),
                "hours": optional(json!({"type": "number", "minimum": 0.5, "maximum": 720})),
            })))
            .json(reference("Case"))),
        ("/api/v1/evaluation", "get", Op::new("evaluation", "cases", "The national evaluation rates by unit")
            .params([
                required_query("from", "first city day", date()),
                required_query("to", "last city day, inclusive", date()),
                query("by", "unit", enumeration(By::ALL.iter().map(|b| b.as_str()))),
            ])
            .json(object(&["rows"], json!({"rows": array_of(object(&["unit", "score", "grade", "rank"], json!({
                "unit": string(), "score": {"type": "number", "nullable": true},
                "grade": {"type": "string", "nullable": true}, "rank": {"type": "integer", "nullable": true},
            })))})))),
        // Sensors.
        ("/api/v1/sensors", "post", Op::new("registerSensor", "sensors", "Register a sensor (admin)")
            .json_body(object(&["code", "kind", "lon", "lat"], json!({
                "code": string(), "kind": enumeration(crate::catalog::KINDS.keys().map(|k| k.as_str())),
                "lon": lon(), "lat": lat(), "crs": optional(string()), "name": optional(string()),
                "component_code": optional(string()), "thresholds": optional(reference("Thresholds")),
            })))
            .created(reference("Sensor"))
            .link("getSensor", "code", "$response.body#/code")
            .link("getReadings", "code", "$response.body#/code")),
        ("/api/v1/sensors/readings", "post", Op::new("postReadings", "sensors", "A batch of readings")
            .json_body(object(&["readings"], json!({"readings": {"type": "array", "maxItems": super::sensors::MAX_READINGS,
                "items": object(&["sensor", "at", "value"], json!({"sensor": string(),
                    "at": {"type": "string", "format": "date-time"}, "value": {"type": "number"}}))}})))
            .json(object(&["accepted", "rejected"], json!({"accepted": {"type": "integer"},
                "rejected": array_of(json!({"type": "object"}))})))),
        ("/api/v1/sensors/{code}", "get", Op::new("getSensor", "sensors", "A sensor with its live value")
            .params([path("code", string())])
            .json(reference("Sensor"))),
        ("/api/v1/sensors/{code}/readings", "get", Op::new("getReadings", "sensors", "Stored readings, bucketed beyond max_points")
            .params([
                path("code", string()),
                query("from", "RFC 3339 instant", string()),
                query("to", "RFC 3339 instant", string()),
                query("max_points", "most points", json!({"type": "integer", "minimum": 1, "maximum": super::sensors::MAX_POINTS})),
            ])
            .json(object(&["sensor", "count", "readings"], json!({"sensor": string(), "count": {"type": "integer"},
                "readings": array_of(object(&["at"], json!({"at": string()})))})))),
        ("/api/v1/alarms", "get", Op::new("listAlarms", "sensors", "Raised alarms (or the latest of all)")
            .params([
                query("active", "only raised ones (default)", boolean()),
                query("limit", "how many", json!({"type": "integer", "minimum": 1, "maximum": 10000})),
            ])
            .json(object(&["alarms"], json!({"alarms": array_of(reference("Alarm"))})))
            .link("ackAlarm", "id", "$response.body#/alarms/0/id")),
        ("/api/v1/alarms/{id}/ack", "post", Op::new("ackAlarm", "sensors", "Acknowledge an alarm")
            .params([path("id", json!({"type": "integer", "format": "int64"}))])
            .json(reference("Alarm"))),
        // Field staff.
        ("/api/v1/staff", "post", Op::new("registerStaff", "staff", "Register a member of the field staff (admin)")
            .json_body(object(&["code", "name", "role"], json!({
                "code": string(), "name": string(),
                "role": enumeration(StaffRole::ALL.iter().map(|r| r.as_str())),
                "dept_code": optional(string()), "community": optional(string()),
                "grids": optional(array_of(string())), "lon": optional(lon()), "lat": optional(lat()),
                "crs": optional(string()),
            })))
            .created(reference("Staff"))
            .link("getStaff", "code", "$response.body#/code")
            .link("getTrack", "code", "$response.body#/code")),
        ("/api/v1/staff", "get", Op::new("listStaff", "staff", "The field staff, with who is on duty")
            .params([
                query("on_duty", "only those on (or off) duty", boolean()),
                query("role", "only this role", enumeration(StaffRole::ALL.iter().map(|r| r.as_str()))),
            ])
            .json(object(&["staff", "count", "on_duty"], json!({"staff": array_of(reference("Staff")),
                "count": {"type": "integer"}, "on_duty": {"type": "integer"}})))),
        ("/api/v1/staff/positions", "post", Op::new("postPositions", "staff", "A batch of staff positions (a member's own token, a device or an admin)")
            .json_body(object(&["positions"], json!({"positions": {"type": "array", "maxItems": super::staff::MAX_POSITIONS,
                "items": object(&["staff", "lon", "lat"], json!({"staff": string(),
                    "at": {"type": "string", "format": "date-time"}, "lon": lon(), "lat": lat(),
                    "crs": optional(string())}))}})))
            .json(object(&["accepted", "duplicates", "out_of_order", "rejected"], json!({"accepted": {"type": "integer"},
                "duplicates": {"type": "integer"}, "out_of_order": {"type": "integer"},
                "rejected": array_of(object(&["index", "reason"], json!({"index": {"type": "integer"}, "reason": string(), "detail": string()})))})))),
        ("/api/v1/staff/nearest", "get", Op::new("nearestStaff", "staff", "Members nearest a point, nearest first")
            .params([
                required_query("lon", "longitude", lon()),
                required_query("lat", "latitude", lat()),
                param("crs"),
                query("k", "how many", json!({"type": "integer", "minimum": 1, "maximum": crate::staff::MAX_NEAREST})),
                query("on_duty", "only those on duty (default)", boolean()),
                query("patrolling", "only supervisors and collectors", boolean()),
            ])
            .json(object(&["staff"], json!({"staff": array_of(object(&["code", "name", "distance_m"], json!({
                "code": string(), "name": string(), "role": string(), "distance_m": {"type": "number"},
                "on_duty": {"type": "boolean"}, "last_seen": {"type": "string", "nullable": true},
                "grid_code": {"type": "string", "nullable": true}, "lon": {"type": "number"}, "lat": {"type": "number"},
            })))})))),
        ("/api/v1/staff/{code}", "get", Op::new("getStaff", "staff", "A member and where they were last seen")
            .params([path("code", string())])
            .json(reference("Staff"))),
        ("/api/v1/staff/{code}/track", "get", Op::new("getTrack", "staff", "A member's track as a LineString with the time of each vertex")
            .params([
                path("code", string()),
                query("from", "RFC 3339 instant or date (default: today, city time)", string()),
                query("to", "RFC 3339 instant or date (default: now)", string()),
                param("crs"),
            ])
            .answers("200", "application/geo+json", reference("Feature"))),
        ("/api/v1/tasks", "get", Op::new("listTasks", "staff", "The field tasks (verify, check) assigned to the caller's staff member")
            .json(object(&["staff", "tasks"], json!({"staff": string(), "tasks": array_of(reference("Case")),
                "incidents": array_of(reference("Incident"))})))),
        ("/api/v1/analysis/patrol", "get", Op::new("patrol", "analysis", "Patrol coverage of one city day")
            .params([
                query("date", "city day (default: today)", date()),
                query("by", "rows per", enumeration(crate::staff::patrol::By::ALL.iter().map(|b| b.as_str()))),
            ])
            .json(object(&["date", "by", "rows", "summary"], json!({"date": string(), "by": string(),
                "rows": array_of(json!({"type": "object"})),
                "summary": object(&["grids_assigned", "grids_visited", "coverage_rate"], json!({
                    "grids_assigned": {"type": "integer"}, "grids_visited": {"type": "integer"},
                    "coverage_rate": {"type": "number", "nullable": true}}))})))),
        // Linkage (一键联动).
        ("/api/v1/plans", "post", Op::new("savePlan", "linkage", "Save a plan, or a new version of one (admin)")
            .json_body(reference("NewPlan"))
            .created(reference("Plan"))
            .link("getPlan", "code", "$response.body#/code")),
        ("/api/v1/plans", "get", Op::new("listPlans", "linkage", "The latest version of every plan")
            .json(object(&["plans"], json!({"plans": array_of(reference("Plan"))})))),
        ("/api/v1/plans/{code}", "get", Op::new("getPlan", "linkage", "One version of a plan (the latest by default)")
            .params([path("code", string()), query("version", "the version", json!({"type": "integer", "minimum": 1}))])
            .json(reference("Plan"))),
        ("/api/v1/incidents", "post", Op::new("startIncident", "linkage", "Start a plan at a place (shift leader, dispatcher)")
            .json_body(object(&["plan", "lon", "lat"], json!({"plan": string(), "lon": lon(), "lat": lat(),
                "crs": optional(string()), "case_id": optional(json!({"type": "integer"})),
                "alarm_id": optional(json!({"type": "integer"}))})))
            .created(reference("Incident"))
            .link("getIncident", "id", "$response.body#/id")
            .link("incidentResources", "id", "$response.body#/id")),
        ("/api/v1/incidents", "get", Op::new("listIncidents", "linkage", "Incidents the caller may see, the latest first")
            .params([query("open", "only open ones", boolean())])
            .json(object(&["incidents"], json!({"incidents": array_of(reference("Incident"))})))),
        ("/api/v1/incidents/{id}", "get", Op::new("getIncident", "linkage", "An incident with its tasks and outside calls")
            .params([path("id", string())])
            .json(reference("Incident"))),
        ("/api/v1/incidents/{id}/resources", "get", Op::new("incidentResources", "linkage", "Cameras, staff on duty and resource components around an incident, nearest first")
            .params([path("id", string())])
            .json(object(&["cameras", "staff", "components", "radius_m"], json!({"radius_m": {"type": "number"},
                "cameras": array_of(json!({"type": "object"})), "staff": array_of(json!({"type": "object"})),
                "components": array_of(json!({"type": "object"}))})))),
        ("/api/v1/incidents/{id}/tasks/{dept}/actions", "post", Op::new("actOnTask", "linkage", "A department reports on its task (its own token)")
            .params([path("id", string()), path("dept", string())])
            .json_body(object(&["action"], json!({"action": enumeration(["ack", "arrive", "done"]), "note": optional(string())})))
            .json(reference("Incident"))),
        ("/api/v1/incidents/{id}/close", "post", Op::new("closeIncident", "linkage", "Close an incident (the lead department or a shift leader)")
            .params([path("id", string())])
            .json_body(object(&[], json!({"note": optional(string())})))
            .json(reference("Incident"))),
        // Analyses.
        ("/api/v1/analysis/hotspots", "get", Op::new("hotspots", "analysis", "Counts, Gi* or Local Moran per unit")
            .params(analysis_params())
            .params([
                unit_param(),
                query("method", "statistic", enumeration(Method::ALL.iter().map(|m| m.as_str()))),
                query("geometry", "include unit geometry", boolean()),
                query("fdr", "false discovery rate correction of the bins", boolean()),
            ])
            .answers("200", "application/geo+json", reference("FeatureCollection"))),
        ("/api/v1/analysis/hotspots", "post", Op::new("publishHotspots", "analysis", "Publish the hotspot overlay of the big screens (analyst)")
            .params(analysis_params())
            .params([unit_param(),
                query("method", "the overlay shows Gi*", enumeration([Method::GiStar.as_str()]))])
            .answers("200", "application/geo+json", reference("FeatureCollection"))),
        ("/api/v1/analysis/density", "get", Op::new("density", "analysis", "Kernel density grid")
            .params(analysis_params())
            .params([
                query("cell_m", "cell size in metres", json!({"type": "number", "exclusiveMinimum": true, "minimum": 0})),
                query("bandwidth_m", "kernel radius in metres", json!({"type": "number", "exclusiveMinimum": true, "minimum": 0})),
                query("format", "grid (default) or geojson", enumeration(["grid", "geojson"])),
            ])
            .json(object(&["cell_m", "values"], json!({"cell_m": {"type": "number"}, "values": array_of(json!({"type": "number"}))})))
            .answers("200", "application/geo+json", reference("FeatureCollection"))),
        ("/api/v1/analysis/emerging", "get", Op::new("emerging", "analysis", "Emerging hotspot categories per unit")
            .params(analysis_params())
            .params([
                unit_param(),
                query("step", "time step", enumeration(Step::ALL.iter().map(|s| s.as_str()))),
                query("series", "each unit's counts and z per step", boolean()),
                query("geometry", "include unit geometry", boolean()),
            ])
            .answers("200", "application/geo+json", reference("FeatureCollection"))),
        ("/api/v1/analysis/ranking", "get", Op::new("ranking", "analysis", "Top units by count with the change")
            .params(analysis_params())
            .params([
                query("by", "unit", enumeration(["grid", "community", "street", "district", "class"])),
                query("top", "how many", json!({"type": "integer", "minimum": 1})),
            ])
            .json(object(&["rows"], json!({"rows": array_of(json!({"type": "object"}))})))),
        ("/api/v1/analysis/peaks", "get", Op::new("peaks", "analysis", "Counts by hour and weekday (city time)")
            .params(analysis_params())
            .json(object(&["by_hour", "by_weekday"], json!({"by_hour": array_of(json!({"type": "integer"})),
                "by_weekday": array_of(json!({"type": "integer"}))})))),
        ("/api/v1/analysis/stats", "post", Op::new("boxStats", "analysis", "Statistics inside a polygon")
            .json_body(object(&["geometry"], json!({"geometry": {"description": "GeoJSON polygon or WKT string"}, "crs": optional(string())})))
            .json(json!({"type": "object"}))),
        // Export.
        ("/api/v1/export/{collection}", "get", Op::new("export", "export", "A collection as a file")
            .params([
                path("collection", param_schema_collections()),
                query("format", "file format", enumeration(crate::export::write::Format::ALL.iter().map(|f| f.name()))),
                param("crs"),
                param("bbox"),
            ])
            .files(crate::export::write::Format::ALL.iter().map(|f| f.content_type()))),
        ("/api/v1/export/tiles", "get", Op::new("exportTiles", "export", "An area's live vector tiles as one offline package")
            .params([
                query("format", "package format", enumeration(["pmtiles", "mbtiles"])),
                query("layers", "tile layers, comma-separated (default: every collection)", string()),
                query("bbox", "minLon,minLat,maxLon,maxLat (default: the city's extent)", string()),
                query("minzoom", "first zoom (default 12)", json!({"type": "integer", "minimum": 0, "maximum": 22})),
                query("maxzoom", "last zoom (default 16)", json!({"type": "integer", "minimum": 0, "maximum": 22})),
            ])
            .files(["application/vnd.pmtiles", "application/vnd.sqlite3"])),
        // Feed.
        ("/api/v1/events", "get", Op::new("events", "feed", "Server-sent events of every change")
            .params([json!({"name": "Last-Event-ID", "in": "header", "required": false, "schema": string()})])
            .answers("200", "text/event-stream", object(&["data"], json!({"event": string(), "data": string(), "id": string()})))),
        // Open311 GeoReport v2.
        ("/open311/v2/services.json", "get", Op::new("open311Services", "open311", "Service (class) list")
            .public()
            .json(array_of(object(&["service_code", "service_name"], json!({"service_code": string(), "service_name": string()}))))),
        ("/open311/v2/requests.json", "get", Op::new("open311Requests", "open311", "Service requests")
            .params([
                query("status", "open or closed", enumeration(["open", "closed"])),
                query("service_code", "one class", string()),
                query("start_date", "from", string()),
                query("end_date", "to", string()),
            ])
            .json(array_of(reference("Open311Request")))),
        ("/open311/v2/requests.json", "post", Op::new("open311Report", "open311", "Report through a public channel")
            .body("application/x-www-form-urlencoded", object(&["service_code", "lat", "long"], json!({
                "api_key": string(), "service_code": string(), "lat": {"type": "number"}, "long": {"type": "number"},
                "description": string(), "address_string": string(),
            })))
            .or_body("multipart/form-data", object(&["service_code", "lat", "long"], json!({
                "api_key": string(), "service_code": string(), "lat": {"type": "number"}, "long": {"type": "number"},
                "description": string(), "address_string": string(), "media": {"type": "string", "format": "binary"},
            })))
            .answers("201", "application/json", array_of(object(&["service_request_id"], json!({"service_request_id": string()}))))
            .link("open311Request", "file", "$response.body#/0/service_request_id")),
        ("/open311/v2/requests/{id}/media/{mid}", "get", Op::new("open311Photo", "open311", "A service request's photo")
            .params([path("id", string()), path("mid", string())])
            .files(["image/jpeg", "image/png", "image/webp"])),
        ("/open311/v2/requests/{file}", "get", Op::new("open311Request", "open311", "One service request")
            .params([path("file", json!({"type": "string", "description": "<id>.json"}))])
            .json(array_of(reference("Open311Request")))),
    ];
    ops.into_iter().map(|(p, m, op)| (p.to_string(), m, op.build())).collect()
}

fn param_schema_collections() -> Value {
    enumeration(Collection::FEATURES.iter().map(|c| c.as_str()))
}

fn components() -> Value {
    let mut c = base_components();
    let schemas = c["schemas"].as_object_mut().expect("schemas");
    if let Value::Object(more) = linkage_schemas() {
        schemas.extend(more);
    }
    c
}

/// The plans' and incidents' schemas (apart: one `json!` of all of them is too deep a macro).
fn linkage_schemas() -> Value {
    json!({
            "Tilesets": object(&["tilesets"], json!({"tilesets": array_of(object(&["dataType", "crs", "links"],
                json!({"dataType": string(), "crs": string(), "tileMatrixSetURI": string(), "links": array_of(json!({"type": "object"}))})))})),
            "Tileset": object(&["dataType", "crs", "links", "tileMatrixSetLimits"], json!({"dataType": string(), "crs": string(),
                "tileMatrixSetURI": string(), "links": array_of(json!({"type": "object"})),
                "tileMatrixSetLimits": array_of(json!({"type": "object"})), "layers": array_of(json!({"type": "object"}))})),
            "NewPlan": object(&["code", "name", "trigger", "lead"], json!({"code": string(), "name": string(),
                "trigger": {"oneOf": [
                    object(&["sensor_kind", "level"], json!({"sensor_kind": string(),
                        "level": enumeration(Level::ALL.iter().map(|l| l.as_str()))})),
                    object(&["class_code"], json!({"class_code": string(), "urgency": optional(enumeration(["normal", "urgent"]))})),
                    enumeration(["manual"]),
                ]},
                "lead": reference("Party"), "assist": array_of(reference("Party")),
                "radius_m": optional(json!({"type": "number"})), "resource_classes": array_of(string()),
                "webhooks": array_of(object(&["url", "secret"], json!({"url": string(), "secret": string()}))),
            })),
            "Party": {"type": "object", "properties": {"dept_code": optional(string()),
                "role": optional(enumeration(["owner", "street", "competent"])), "task": optional(string()),
                "deadline_min": optional(json!({"type": "number"})), "ack_min": optional(json!({"type": "number"}))}},
            "Plan": object(&["code", "name", "version", "trigger", "lead"], json!({"code": string(), "name": string(),
                "version": {"type": "integer"}, "versions": array_of(json!({"type": "integer"})),
                "trigger": {"oneOf": [{"type": "object"}, string()]}, "lead": {"type": "object"},
                "assist": array_of(json!({"type": "object"})),
                "webhooks": array_of(object(&["url"], json!({"url": string()}))),
                "created_at": string(), "created_by": string()})),
            "Incident": object(&["id", "plan", "status", "tasks", "webhooks"], json!({"id": string(), "plan": string(),
                "plan_version": {"type": "integer"}, "status": enumeration(["open", "closed"]),
                "case_id": {"type": "integer", "nullable": true}, "alarm_id": {"type": "integer", "nullable": true},
                "grid_code": {"type": "string", "nullable": true}, "lon": {"type": "number"}, "lat": {"type": "number"},
                "tasks": array_of(object(&["dept_code", "role", "status", "deadline_at"], json!({"dept_code": string(),
                    "dept_name": string(), "role": enumeration(["lead", "assist"]),
                    "status": enumeration(["dispatched", "acked", "arrived", "done"]), "deadline_at": string(),
                    "ack_due_at": string(), "late": array_of(enumeration(["ack", "arrive"]))}))),
                "webhooks": array_of(object(&["url", "attempts", "status"], json!({"url": string(), "event": string(),
                    "attempts": {"type": "integer"}, "status": enumeration(["pending", "delivered", "failed"])}))),
            })),
    })
}

fn base_components() -> Value {
    let feature_ids = param_schema_collections();
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
            "description": format!("a token from `onemap token create --role ROLE`; roles: {}",
                ROLES.iter().map(|r| r.0).collect::<Vec<_>>().join(", "))}},
        "headers": {"Seq": {"description": "the write's position in the change log", "schema": {"type": "integer"}}},
        "responses": {"Problem": {"description": "a problem (RFC 9457)",
            "content": {"application/problem+json": {"schema": reference("Problem")}}}},
        "parameters": {
            "collectionId": path("collectionId", feature_ids),
            "limit": {"name": "limit", "in": "query", "required": false, "style": "form", "explode": false,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
            "offset": query("offset", "skip this many", json!({"type": "integer", "minimum": 0, "default": 0})),
            "bbox": {"name": "bbox", "in": "query", "required": false, "style": "form", "explode": false,
                "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}},
            "datetime": query("datetime", "RFC 3339 instant or interval, or dates (inclusive city days)", string()),
            "crs": query("crs", "wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:4326 | EPSG:4490 (and EPSG:3857 where projected output is offered)", string()),
        },
        "schemas": {
            "Problem": object(&["type", "title", "status"], json!({"type": string(), "title": string(),
                "status": {"type": "integer"}, "detail": string()})),
            "Link": object(&["href", "rel"], json!({"href": string(), "rel": string(), "type": string(), "title": string()})),
            "Ready": object(&["status"], json!({"status": enumeration(["ready", "lagging", "store_unreachable"]),
                "lag_ms": {"type": "integer", "nullable": true}})),
            "Collection": object(&["id", "links"], json!({"id": string(), "title": string(), "links": array_of(reference("Link"))})),
            "Feature": object(&["type", "geometry", "properties"], json!({"type": enumeration(["Feature"]),
                "id": {"oneOf": [string(), {"type": "integer"}]},
                "geometry": {"type": "object", "nullable": true}, "properties": {"type": "object", "nullable": true}})),
            "FeatureCollection": object(&["type", "features"], json!({"type": enumeration(["FeatureCollection"]),
                "features": array_of(reference("Feature")), "numberMatched": {"type": "integer"},
                "numberReturned": {"type": "integer"}})),
            "Location": object(&["grid", "community", "street", "district", "responsible"], json!({
                "grid": object(&["code"], json!({"code": string(), "name": string(), "area_m2": {"type": "number"}})),
                "community": {"type": "object", "nullable": true}, "street": {"type": "object", "nullable": true},
                "district": {"type": "object", "nullable": true},
                "responsible": array_of(object(&["dept_code", "role"], json!({"dept_code": string(), "dept_name": string(), "role": string()}))),
            })),
            "NewCase": object(&["class_code", "lon", "lat", "description", "source"], json!({
                "class_code": string(), "lon": lon(), "lat": lat(), "crs": optional(string()),
                "description": string(), "source": enumeration(crate::cases::intake::SOURCES.iter().copied()),
                "component_code": optional(string()),
                "urgency": optional(enumeration(crate::cases::intake::URGENCIES.iter().copied())),
            })),
            "Media": object(&["id", "case_id", "step", "content_type", "url", "thumbnail_url"], json!({
                "id": string(), "case_id": {"type": "integer"},
                "step": enumeration(crate::model::MediaStep::ALL.iter().map(|s| s.as_str())),
                "content_type": string(), "bytes": {"type": "integer"},
                "width": {"type": "integer"}, "height": {"type": "integer"},
                "taken_at": {"type": "string", "nullable": true},
                "lon": {"type": "number", "nullable": true}, "lat": {"type": "number", "nullable": true},
                "distance_m": {"type": "number", "nullable": true}, "far": boolean(),
                "flags": array_of(enumeration(["far", "no_place", "early", "no_time"])),
                "url": string(), "thumbnail_url": string(), "uploaded_at": string(),
                "actor": {"type": "string", "nullable": true}, "role": string(),
            })),
            "Case": object(&["id", "status", "version", "class_code", "source"], json!({
                "id": {"type": "integer"}, "status": enumeration(Status::ALL.iter().map(|s| s.as_str())),
                "version": {"type": "integer"}, "class_code": string(), "source": string(),
                "grid_code": {"type": "string", "nullable": true}, "dept_code": {"type": "string", "nullable": true},
                "light": {"type": "string", "nullable": true}, "lon": {"type": "number"}, "lat": {"type": "number"},
                "assignee": {"type": "string", "nullable": true}, "assigned_at": {"type": "string", "nullable": true},
                "task": optional(enumeration(["verify", "check"])),
                "history": array_of(object(&["action", "at"], json!({"action": string(), "at": string()}))),
            })),
            "Thresholds": {"type": "object", "properties": {
                "direction": enumeration(["above", "below"]), "blue": {"type": "number"}, "yellow": {"type": "number"},
                "orange": {"type": "number"}, "red": {"type": "number"}, "hysteresis": {"type": "number", "minimum": 0},
                "min_duration_s": {"type": "integer", "minimum": 0}}},
            "Sensor": object(&["code", "kind", "lon", "lat"], json!({"code": string(), "kind": string(),
                "lon": {"type": "number"}, "lat": {"type": "number"},
                "level": {"type": "string", "nullable": true}, "value": {"type": "number", "nullable": true},
                "stale": {"type": "boolean"}})),
            "Staff": object(&["code", "name", "role", "on_duty", "lon", "lat"], json!({"code": string(), "name": string(),
                "role": enumeration(StaffRole::ALL.iter().map(|r| r.as_str())), "on_duty": {"type": "boolean"},
                "last_seen": {"type": "string", "nullable": true}, "grid_code": {"type": "string", "nullable": true},
                "dept_code": {"type": "string", "nullable": true}, "community_code": {"type": "string", "nullable": true},
                "grids": array_of(string()), "lon": {"type": "number"}, "lat": {"type": "number"}})),
            "Alarm": object(&["id", "sensor", "level", "raised_at"], json!({"id": {"type": "integer"}, "sensor": string(),
                "level": enumeration(Level::ALL.iter().map(|l| l.as_str())), "raised_at": string(),
                "value": {"type": "number"}, "case_id": {"type": "integer", "nullable": true}})),
            "Open311Request": object(&["service_request_id", "status"], json!({"service_request_id": string(),
                "status": enumeration(["open", "closed"]), "service_code": string(),
                "lat": {"type": "number"}, "long": {"type": "number"},
                "media_url": {"type": "string", "nullable": true}})),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_unique_id_and_answers_problems() {
        let doc = document("http://localhost", Some((88.88, 29.27)));
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no id"));
                assert!(ids.insert(id.to_string()), "{id} twice");
                assert!(op["responses"]["4XX"].is_object(), "{id}");
            }
        }
        assert!(ids.len() > 35, "{} operations", ids.len());
    }
}
