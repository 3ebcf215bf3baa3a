//! Reading and writing GIS files with GDAL from the tests, independently of onemap's own
//! reader and writer: what a planner's QGIS or ogrinfo would see, and broken files to import.

use std::collections::HashMap;

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{FieldValue, LayerAccess, LayerOptions, OGRFieldType, ToGdal};
use gdal::{Dataset, DriverManager};
use geo::{CoordsIter, Geometry};

/// One feature as a file holds it.
#[derive(Debug, Clone)]
pub struct Feat {
    pub layer: String,
    pub fields: HashMap<String, String>,
    /// In the file's CRS.
    pub geom: Option<Geometry<f64>>,
}

/// Every feature of every layer of `path` (a `.zip` is read inside), and each layer's EPSG code.
pub fn read_all(path: &str) -> (Vec<Feat>, HashMap<String, Option<i32>>) {
    let gdal_path = if path.ends_with(".zip") { format!("/vsizip/{path}") } else { path.to_string() };
    // The DXF onemap writes is AutoCAD 2007 (UTF-8); GDAL's reader goes by the code page.
    gdal::config::set_thread_local_config_option("DXF_ENCODING", "UTF-8").unwrap();
    let ds = Dataset::open(&gdal_path).unwrap_or_else(|e| panic!("GDAL cannot open {path}: {e}"));
    let mut out = Vec::new();
    let mut srs = HashMap::new();
    for mut layer in ds.layers() {
        let name = layer.name();
        srs.insert(name.clone(), layer.spatial_ref().and_then(|s| s.auth_code().ok()));
        let names: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
        for f in layer.features() {
            let mut fields = HashMap::new();
            for (i, n) in names.iter().enumerate() {
                if let Some(v) = f.field(i).ok().flatten() {
                    fields.insert(n.clone(), text(v));
                }
            }
            let geom = f.geometry().map(|g| g.to_geo().expect("a geometry geo can hold"));
            out.push(Feat { layer: name.clone(), fields, geom });
        }
    }
    (out, srs)
}

fn text(v: FieldValue) -> String {
    match v {
        FieldValue::StringValue(s) => s,
        FieldValue::IntegerValue(i) => i.to_string(),
        FieldValue::Integer64Value(i) => i.to_string(),
        FieldValue::RealValue(x) => x.to_string(),
        FieldValue::DateValue(d) => d.to_string(),
        FieldValue::DateTimeValue(t) => t.to_rfc3339(),
        other => format!("{other:?}"),
    }
}

fn srs(epsg: u32) -> SpatialRef {
    let mut s = SpatialRef::from_epsg(epsg).unwrap();
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    s
}

/// A geometry in EPSG `from` reprojected by PROJ to EPSG `to`, axis order x/lon first.
pub fn reproject(g: &Geometry<f64>, from: u32, to: u32) -> Geometry<f64> {
    if from == to {
        return g.clone();
    }
    let t = CoordTransform::new(&srs(from), &srs(to)).unwrap();
    let mut gg = g.to_gdal().unwrap();
    gg.transform_inplace(&t).unwrap();
    gg.to_geo().unwrap()
}

/// How far in metres the vertices of two lon/lat geometries are apart: each vertex of either to
/// the nearest vertex of the other, at worst. Vertex order may differ (a Shapefile turns rings
/// clockwise), the vertex count may not.
pub fn max_offset_m(a: &Geometry<f64>, b: &Geometry<f64>) -> f64 {
    let (ca, cb): (Vec<_>, Vec<_>) = (a.coords_iter().collect(), b.coords_iter().collect());
    assert_eq!(ca.len(), cb.len(), "vertex counts differ: {a:?} vs {b:?}");
    let nearest = |p: &geo::Coord<f64>, other: &[geo::Coord<f64>]| {
        other.iter().map(|q| onemap::geo::haversine_m((p.x, p.y), (q.x, q.y))).fold(f64::INFINITY, f64::min)
    };
    let ab = ca.iter().map(|p| nearest(p, &cb)).fold(0.0, f64::max);
    let ba = cb.iter().map(|p| nearest(p, &ca)).fold(0.0, f64::max);
    ab.max(ba)
}

/// Writes one layer with text fields to a new file of `driver`.
pub fn write_layer(
    path: &str,
    driver: &str,
    epsg: Option<u32>,
    layer_options: &[&str],
    fields: &[&str],
    features: &[(Vec<Option<String>>, Geometry<f64>)],
) {
    let _ = std::fs::remove_file(path);
    let driver = DriverManager::get_driver_by_name(driver).unwrap();
    let mut ds = driver.create_vector_only(path).unwrap();
    let s = epsg.map(srs);
    let stem = std::path::Path::new(path).file_stem().unwrap().to_str().unwrap().to_string();
    let layer = ds
        .create_layer(LayerOptions {
            name: &stem,
            srs: s.as_ref(),
            ty: gdal::vector::OGRwkbGeometryType::wkbUnknown,
            options: Some(layer_options),
        })
        .unwrap();
    for f in fields {
        gdal::vector::FieldDefn::new(f, OGRFieldType::OFTString).unwrap().add_to_layer(&layer).unwrap();
    }
    for (values, g) in features {
        let mut feat = gdal::vector::Feature::new(layer.defn()).unwrap();
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                feat.set_field_string(i, v).unwrap();
            }
        }
        feat.set_geometry(g.to_gdal().unwrap()).unwrap();
        feat.create(&layer).unwrap();
    }
    // The layer borrows the dataset: it ends here, before the dataset is closed.
    let _ = layer;
    ds.close().unwrap();
}
