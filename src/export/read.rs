//! Reading a source file with GDAL: any vector format it knows, Shapefile text in the declared
//! or a given encoding, CSV points from coordinate columns or WKT, and every geometry brought to
//! storage coordinates (CGCS2000 longitude/latitude) from the file's CRS, a given one, or one
//! inferred where the file has none.

use std::path::Path;

use gdal::vector::{FieldValue, LayerAccess};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};
use geo::Geometry;

use super::ExportError;
use super::crs::{FromSource, zone_prefixed_epsg};

/// How to read a source.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The layer to read (default: the first).
    pub layer: Option<String>,
    /// The source CRS, overriding what the file says (`gcj02`, `EPSG:4549`, ...).
    pub crs: Option<String>,
    /// Shapefile text encoding (`GBK`, `UTF-8`, ...), overriding the `.cpg`.
    pub encoding: Option<String>,
}

/// One feature as read: its label for the report, its field values as text, and its geometry
/// in storage coordinates (or why there is none).
#[derive(Debug, Clone)]
pub struct SourceFeature {
    pub fid: u64,
    pub values: Vec<Option<String>>,
    pub geom: Result<Geometry<f64>, String>,
}

/// A whole source layer.
#[derive(Debug)]
pub struct Source {
    pub fields: Vec<String>,
    pub features: Vec<SourceFeature>,
    /// How the coordinates were read (`EPSG:4549 from the file`), for the report.
    pub crs: String,
    pub warnings: Vec<String>,
}

/// Mainland China and its seas in longitude/latitude: coordinates inside it in a file without a
/// CRS are taken as CGCS2000 longitude/latitude.
const CHINA: [f64; 4] = [73.0, 3.0, 136.0, 54.0];

/// Reads the layer of `path`; `progress(done, total)` as features are read.
pub fn read(path: &Path, opts: &ReadOptions, progress: &dyn Fn(u64, u64)) -> Result<Source, ExportError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let shapefile = matches!(ext.as_str(), "shp" | "dbf" | "zip");
    let has_cpg = path.with_extension("cpg").exists() || path.with_extension("CPG").exists();
    let mut warnings = Vec::new();
    let first_encoding = match (&opts.encoding, shapefile && !has_cpg && ext != "zip") {
        (Some(e), _) => Some(e.clone()),
        // No .cpg: read the bytes as they are, and if they are not UTF-8 read them again as
        // GBK, what a Chinese survey delivery without a .cpg almost always is.
        (None, true) => Some(String::new()),
        (None, false) => None,
    };
    let mut source = read_once(path, &ext, opts, first_encoding.as_deref(), progress, &mut warnings)?;
    if opts.encoding.is_none() && first_encoding.is_some() && source.features.iter().any(has_replacement) {
        warnings.push(
            "no .cpg beside the Shapefile and its text is not UTF-8: read as GBK (CP936); give --encoding to override"
                .into(),
        );
        source = read_once(path, &ext, opts, Some("CP936"), progress, &mut warnings)?;
    }
    source.warnings = warnings;
    Ok(source)
}

/// True when some text of `f` did not decode (GDAL's text came with invalid bytes).
pub fn has_replacement(f: &SourceFeature) -> bool {
    f.values.iter().flatten().any(|v| v.contains('\u{FFFD}'))
}

fn read_once(
    path: &Path,
    ext: &str,
    opts: &ReadOptions,
    encoding: Option<&str>,
    progress: &dyn Fn(u64, u64),
    warnings: &mut Vec<String>,
) -> Result<Source, ExportError> {
    let mut open_options: Vec<String> = Vec::new();
    if let Some(e) = encoding {
        open_options.push(format!("ENCODING={e}"));
    }
    if ext == "csv" {
        open_options.extend([
            "X_POSSIBLE_NAMES=lon,lng,longitude,x,经度".to_string(),
            "Y_POSSIBLE_NAMES=lat,latitude,y,纬度".to_string(),
            "GEOM_POSSIBLE_NAMES=wkt,geom,geometry,the_geom".to_string(),
            "KEEP_GEOM_COLUMNS=NO".to_string(),
        ]);
    }
    // Closed polylines in CAD drawings are areas (grids are drawn that way).
    gdal::config::set_thread_local_config_option("DXF_CLOSED_LINE_AS_POLYGON", "TRUE")?;
    let display = path.display().to_string();
    let gdal_path = if ext == "zip" { format!("/vsizip/{display}") } else { display.clone() };
    let refs: Vec<&str> = open_options.iter().map(String::as_str).collect();
    let ds = Dataset::open_ex(
        &gdal_path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_VECTOR | GdalOpenFlags::GDAL_OF_READONLY,
            open_options: Some(&refs),
            ..Default::default()
        },
    )
    .map_err(|e| ExportError::Open { path: display.clone(), detail: e.to_string() })?;
    let mut layer = match &opts.layer {
        Some(name) => ds.layer_by_name(name).map_err(|_| {
            let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
            ExportError::Source(format!("{display} has no layer {name:?}; layers: {}", names.join(", ")))
        })?,
        None => {
            if ds.layer_count() == 0 {
                return Err(ExportError::Source(format!("{display} has no vector layer")));
            }
            if ds.layer_count() > 1 {
                let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
                warnings.push(format!(
                    "{} layers ({}): reading the first; --layer-name picks another",
                    names.len(),
                    names.join(", ")
                ));
            }
            ds.layer(0)?
        }
    };
    let mut fields: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
    let declared = layer.spatial_ref();
    let total = layer.try_feature_count().unwrap_or(0);
    let mut raw: Vec<RawFeature> = Vec::new();
    for (i, f) in layer.features().enumerate() {
        let fid = f.fid().unwrap_or(i as u64);
        let values = (0..fields.len()).map(|k| f.field(k).ok().flatten().and_then(text)).collect();
        let geom = match f.geometry() {
            None => Err("no geometry".to_string()),
            Some(g) if g.is_empty() => Err("empty geometry".to_string()),
            Some(g) => {
                let mut g = g.clone();
                g.flatten_to_2d();
                Ok(g)
            }
        };
        raw.push((fid, values, geom));
        if i % 10_000 == 0 {
            progress(i as u64, total);
        }
    }
    progress(raw.len() as u64, total);
    if ext == "dxf" {
        raw = attach_dxf_labels(&mut fields, raw);
    }
    let (from, crs) = source_crs(opts, declared.as_ref(), &raw)?;
    let features = raw
        .into_iter()
        .map(|(fid, values, geom)| {
            let geom = geom.and_then(|mut g| {
                from.apply(&mut g).map_err(|e| format!("cannot reproject: {e}"))?;
                let g: Geometry<f64> = g.to_geo().map_err(|e| format!("unsupported geometry: {e}"))?;
                Ok(from.finish(g))
            });
            SourceFeature { fid, values, geom }
        })
        .collect();
    Ok(Source { fields, features, crs, warnings: Vec::new() })
}

type RawFeature = (u64, Vec<Option<String>>, Result<gdal::vector::Geometry, String>);

/// A CAD drawing keeps attributes as TEXT entities placed inside the shapes they name ("code
/// name", as onemap's DXF export writes them): each shape gets the `code` and `name` of the
/// label inside it, and the labels themselves are not features.
fn attach_dxf_labels(fields: &mut Vec<String>, raw: Vec<RawFeature>) -> Vec<RawFeature> {
    use geo::Contains;
    use rstar::primitives::GeomWithData;
    let Some(text) = fields.iter().position(|f| f == "Text") else { return raw };
    let to_area = |g: &gdal::vector::Geometry| -> Option<geo::Geometry<f64>> {
        match g.to_geo().ok()? {
            geo::Geometry::LineString(l) if l.is_closed() && l.0.len() >= 4 => {
                Some(geo::Polygon::new(l, vec![]).into())
            }
            a @ (geo::Geometry::Polygon(_) | geo::Geometry::MultiPolygon(_)) => Some(a),
            _ => None,
        }
    };
    let mut labels: Vec<GeomWithData<[f64; 2], String>> = Vec::new();
    let mut shapes = Vec::new();
    for (fid, values, geom) in raw {
        let label = values.get(text).cloned().flatten().filter(|t| !t.trim().is_empty());
        match (&geom, label) {
            (Ok(g), Some(t)) if g.geometry_type() == gdal::vector::OGRwkbGeometryType::wkbPoint => {
                let (x, y, _) = g.get_point(0);
                labels.push(GeomWithData::new([x, y], t));
            }
            _ => shapes.push((fid, values, geom)),
        }
    }
    if labels.is_empty() {
        return shapes;
    }
    let tree = rstar::RTree::bulk_load(labels);
    fields.push("code".into());
    fields.push("name".into());
    shapes
        .into_iter()
        .map(|(fid, mut values, geom)| {
            let area = geom.as_ref().ok().and_then(to_area);
            let label = area.as_ref().and_then(|a| {
                let r = geo::BoundingRect::bounding_rect(a)?;
                let env = rstar::AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
                tree.locate_in_envelope(&env)
                    .find(|l| a.contains(&geo::Point::new(l.geom()[0], l.geom()[1])))
                    .map(|l| l.data.clone())
            });
            let (code, name) = match label.as_deref().map(str::trim).map(|t| t.split_once(' ').unwrap_or((t, ""))) {
                Some((c, n)) => (Some(c.to_string()), (!n.is_empty()).then(|| n.trim().to_string())),
                None => (None, None),
            };
            values.push(code);
            values.push(name);
            (fid, values, geom)
        })
        .collect()
}

/// The CRS to read with: the one given, the one declared, or one inferred from the coordinates.
fn source_crs(
    opts: &ReadOptions,
    declared: Option<&gdal::spatial_ref::SpatialRef>,
    raw: &[RawFeature],
) -> Result<(FromSource, String), ExportError> {
    if let Some(c) = &opts.crs {
        let (f, name) = FromSource::given(c)?;
        return Ok((f, format!("{name} (given)")));
    }
    if let Some(s) = declared {
        let name = match (s.auth_name(), s.auth_code()) {
            (Some(a), Ok(c)) => format!("{a}:{c}"),
            _ => s.name().unwrap_or_else(|| "an unnamed CRS".into()),
        };
        return Ok((FromSource::from_srs(s)?, format!("{name} (from the file)")));
    }
    let mut bbox = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    for g in raw.iter().filter_map(|r| r.2.as_ref().ok()) {
        let e = g.envelope();
        bbox = [bbox[0].min(e.MinX), bbox[1].min(e.MinY), bbox[2].max(e.MaxX), bbox[3].max(e.MaxY)];
    }
    if !bbox[0].is_finite() {
        return Ok((FromSource::Identity, "none (no geometry)".into()));
    }
    if bbox[0] >= CHINA[0] && bbox[1] >= CHINA[1] && bbox[2] <= CHINA[2] && bbox[3] <= CHINA[3] {
        return Ok((
            FromSource::Identity,
            "none in the file; longitude/latitude in China, read as CGCS2000 (EPSG:4490)".into(),
        ));
    }
    if let (Some(a), Some(b)) = (zone_prefixed_epsg(bbox[0]), zone_prefixed_epsg(bbox[2]))
        && a == b
        && bbox[1] > 0.0
        && bbox[3] < 6_500_000.0
    {
        let (f, _) = FromSource::given(&format!("EPSG:{a}"))?;
        return Ok((f, format!("none in the file; zone-prefixed Gauss-Krüger eastings, read as EPSG:{a}")));
    }
    Err(ExportError::Source(format!(
        "the file declares no CRS and its coordinates ({:.1}, {:.1}) - ({:.1}, {:.1}) are not longitude/latitude in China: \
         give --crs (EPSG:4549 for CGCS2000 Gauss-Krüger 120°E, gcj02, ...)",
        bbox[0], bbox[1], bbox[2], bbox[3]
    )))
}

/// A field value as text: integral reals without a decimal point (codes stored as numbers in
/// dBASE), dates as ISO 8601.
fn text(v: FieldValue) -> Option<String> {
    Some(match v {
        FieldValue::StringValue(s) => s,
        FieldValue::IntegerValue(i) => i.to_string(),
        FieldValue::Integer64Value(i) => i.to_string(),
        FieldValue::RealValue(x) if x.fract() == 0.0 && x.abs() < 1e17 => format!("{x:.0}"),
        FieldValue::RealValue(x) => x.to_string(),
        FieldValue::DateValue(d) => d.format("%Y-%m-%d").to_string(),
        FieldValue::DateTimeValue(t) => t.to_rfc3339(),
        FieldValue::StringListValue(l) => l.join(","),
        FieldValue::IntegerListValue(l) => l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
        FieldValue::Integer64ListValue(l) => l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
        FieldValue::RealListValue(l) => l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
    })
}
