//! Writing a collection to a file with GDAL, chunk by chunk, so an export never needs the whole
//! layer copied out of the index at once.

use crate::model::Collection;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gdal::vector::{Feature, FieldValue, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{Dataset, DriverManager};
use geo::{Geometry, InteriorPoint};

use super::ExportError;
use super::crs::{OutCrs, ToOut, srs};
use super::fields::{field_type, shorten};
use super::rtree;
use crate::index::{PropValue, Record};

/// The file formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gpkg,
    Shp,
    GeoJson,
    Fgb,
    Csv,
    Kml,
    Dxf,
}

impl Format {
    pub const ALL: [Format; 7] =
        [Format::Gpkg, Format::Shp, Format::GeoJson, Format::Fgb, Format::Csv, Format::Kml, Format::Dxf];

    /// `gpkg`, `shp`, `geojson`, `fgb`, `csv`, `kml` or `dxf` (also a few common aliases).
    pub fn parse(s: &str) -> Result<Format, ExportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gpkg" | "geopackage" => Ok(Format::Gpkg),
            "shp" | "shapefile" | "zip" => Ok(Format::Shp),
            "geojson" | "json" => Ok(Format::GeoJson),
            "fgb" | "flatgeobuf" => Ok(Format::Fgb),
            "csv" => Ok(Format::Csv),
            "kml" => Ok(Format::Kml),
            "dxf" => Ok(Format::Dxf),
            _ => Err(ExportError::UnknownFormat(s.chars().take(32).collect())),
        }
    }

    /// The format a file name's extension names.
    pub fn from_path(path: &Path) -> Option<Format> {
        path.extension().and_then(|e| e.to_str()).and_then(|e| Format::parse(e).ok())
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Gpkg => "gpkg",
            Format::Shp => "shp",
            Format::GeoJson => "geojson",
            Format::Fgb => "fgb",
            Format::Csv => "csv",
            Format::Kml => "kml",
            Format::Dxf => "dxf",
        }
    }

    fn driver(self) -> &'static str {
        match self {
            Format::Gpkg => "GPKG",
            Format::Shp => "ESRI Shapefile",
            Format::GeoJson => "GeoJSON",
            Format::Fgb => "FlatGeobuf",
            Format::Csv => "CSV",
            Format::Kml => "KML",
            Format::Dxf => "DXF",
        }
    }

    /// The extension of the delivered file (a Shapefile travels as a zip).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Shp => "zip",
            f => f.name(),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Gpkg => "application/geopackage+sqlite3",
            Format::Shp => "application/zip",
            Format::GeoJson => "application/geo+json",
            Format::Fgb => "application/flatgeobuf",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Kml => "application/vnd.google-earth.kml+xml",
            Format::Dxf => "image/vnd.dxf",
        }
    }

    /// True for formats already compact, which HTTP compression would only slow down.
    pub fn is_compact(self) -> bool {
        matches!(self, Format::Gpkg | Format::Shp | Format::Fgb)
    }
}

/// What to write: the format, the CRS, and for DXF the Chinese class names its layers carry.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub format: Format,
    pub crs: OutCrs,
    /// Component class code to its name (`0118` to `路灯`), for DXF layer names.
    pub class_names: HashMap<String, String>,
}

impl ExportSpec {
    /// Checks the combination: KML is longitude/latitude on WGS84 by definition.
    pub fn new(format: Format, crs: OutCrs) -> Result<ExportSpec, ExportError> {
        if format == Format::Kml && !matches!(crs, OutCrs::Epsg(4326 | 4490)) {
            return Err(ExportError::Crs(format!(
                "KML is always WGS84 longitude/latitude; crs {} cannot be written as KML",
                crs.name()
            )));
        }
        Ok(ExportSpec { format, crs, class_names: HashMap::new() })
    }

    /// The file name a download gets: `grids-cgcs2000.gpkg`.
    pub fn file_name(&self, collection: Collection) -> String {
        format!("{collection}-{}.{}", self.crs.name(), self.format.extension())
    }
}

/// A source of records to write, chunk by chunk; `None` when done.
pub type Chunks<'a, T> = &'a mut dyn FnMut() -> Option<Vec<T>>;

/// Writes the records `chunks` yields to `out` in `spec`'s format and CRS; returns how many
/// were written. A Shapefile export to a `.zip` path is written beside it and zipped (with its
/// `.cpg` and a `fields.csv` naming the shortened fields); to a `.shp` path it is written as is.
pub fn export<T: Record>(spec: &ExportSpec, out: &Path, chunks: Chunks<'_, T>) -> Result<u64, ExportError> {
    if spec.format != Format::Shp || out.extension().is_some_and(|e| e.eq_ignore_ascii_case("shp")) {
        let target = if spec.format == Format::Shp {
            out.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            out.to_path_buf()
        };
        // Layers are named after the collection; a Shapefile's layer is its file name.
        let stem = match spec.format {
            Format::Shp => out.file_stem().and_then(|s| s.to_str()).unwrap_or(T::COLLECTION).to_string(),
            _ => T::COLLECTION.to_string(),
        };
        return write_dataset(spec, &target, &stem, chunks).map(|(n, _)| n);
    }
    let dir = tempfile::tempdir()?;
    let (n, names) = write_dataset(spec, dir.path(), T::COLLECTION, chunks)?;
    let file = std::fs::File::create(out)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir.path())?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_string();
        zip.start_file(name, options)?;
        std::io::copy(&mut std::fs::File::open(&path)?, &mut zip)?;
    }
    zip.start_file("fields.csv", options)?;
    writeln!(zip, "field,property")?;
    for (short, long) in names {
        writeln!(zip, "{short},{long}")?;
    }
    zip.finish()?;
    Ok(n)
}

/// The geometry kinds a Shapefile keeps apart (one kind per file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Point,
    Line,
    Polygon,
}

fn kind_of(g: &Geometry<f64>) -> Kind {
    match g {
        Geometry::Point(_) | Geometry::MultiPoint(_) => Kind::Point,
        Geometry::Line(_) | Geometry::LineString(_) | Geometry::MultiLineString(_) => Kind::Line,
        _ => Kind::Polygon,
    }
}

/// The layer's geometry type in the file.
fn layer_type(collection: Collection, kind: Option<Kind>) -> OGRwkbGeometryType::Type {
    use Collection::*;
    match (collection, kind) {
        (_, Some(Kind::Point)) | (Cases | Sensors, _) => OGRwkbGeometryType::wkbPoint,
        (_, Some(Kind::Line)) => OGRwkbGeometryType::wkbMultiLineString,
        (_, Some(Kind::Polygon)) | (Districts | Streets | Communities | Grids, _) => {
            OGRwkbGeometryType::wkbMultiPolygon
        }
        _ => OGRwkbGeometryType::wkbUnknown,
    }
}

/// Layer names per format: FlatGeobuf, GeoJSON, CSV and Shapefile name their file after the
/// layer; the others keep the collection id.
struct Layers {
    /// Per geometry kind (only Shapefile splits; the rest use `None`): the layer's index and
    /// the field index of each property (drivers may keep fields of their own, as KML does).
    index: HashMap<Option<Kind>, (usize, Vec<usize>)>,
}

/// The layer just created (the last), with the field index of each of `names`.
fn last_layer(ds: &Dataset, names: &[String], dxf: bool) -> Result<(usize, Vec<usize>), ExportError> {
    let i = ds.layer_count() - 1;
    if dxf {
        return Ok((i, Vec::new()));
    }
    let layer = ds.layer(i)?;
    let fields = names.iter().map(|n| layer.defn().field_index(n)).collect::<Result<_, _>>()?;
    Ok((i, fields))
}

/// Writes into a new dataset at `target` (a file, or the directory of a Shapefile), returning
/// the count and the field names as written with the properties they hold.
fn write_dataset<T: Record>(
    spec: &ExportSpec,
    target: &Path,
    stem: &str,
    chunks: Chunks<'_, T>,
) -> Result<(u64, Vec<(String, String)>), ExportError> {
    let driver = DriverManager::get_driver_by_name(spec.format.driver())?;
    let header = (spec.format == Format::Dxf).then(dxf_header).transpose()?;
    let mut ds = match spec.format {
        // The KML name element carries each feature's name, as Google Earth lists it.
        Format::Kml => {
            // (Cases have no name: their id stays an attribute like the rest.)
            let opts = gdal::cpl::CslStringList::from_iter(T::PROPERTIES.contains(&"name").then_some("NameField=name"));
            driver.create_with_band_type_with_options::<u8, _>(target, 0, 0, 0, &opts)?
        }
        Format::Dxf => {
            // Areas as closed polylines (outlines), not filled hatches: how CAD drawings keep
            // boundaries, and what CAD users edit.
            gdal::config::set_thread_local_config_option("DXF_WRITE_HATCH", "FALSE")?;
            let path = header.as_ref().map(|h| h.path().display().to_string()).unwrap_or_default();
            let opts = gdal::cpl::CslStringList::from_iter([format!("HEADER={path}")]);
            driver.create_with_band_type_with_options::<u8, _>(target, 0, 0, 0, &opts)?
        }
        _ => driver.create_vector_only(target)?,
    };
    let names: Vec<String> = match spec.format {
        Format::Shp => shorten(T::PROPERTIES),
        _ => T::PROPERTIES.iter().map(|s| s.to_string()).collect(),
    };
    let pairs = names.iter().cloned().zip(T::PROPERTIES.iter().map(|s| s.to_string())).collect();
    let types: Vec<OGRFieldType::Type> = T::PROPERTIES
        .iter()
        .map(|p| match (spec.format, field_type(p)) {
            // dBASE has dates but no date-times, and CSV and KML write them without their time
            // zone: RFC 3339 text keeps both the time and the zone.
            (Format::Shp | Format::Csv | Format::Kml, OGRFieldType::OFTDateTime) => OGRFieldType::OFTString,
            // GDAL writes CSV dates as 2026/04/30; ISO 8601 is what Excel and scripts parse.
            (Format::Csv | Format::Kml, OGRFieldType::OFTDate) => OGRFieldType::OFTString,
            (_, t) => t,
        })
        .collect();
    let srs = srs(spec.crs.epsg())?;
    // Only a Shapefile of components splits by geometry kind, creating its layers as kinds
    // appear; everything else has its one layer from the start (GeoPackage wants it created
    // outside the transaction that fills it).
    let split = spec.format == Format::Shp && T::KIND == Collection::Components;
    let mut layers = Layers { index: HashMap::new() };
    if !split {
        create_layer(spec, &mut ds, stem, &srs, layer_type(T::KIND, None), &names, &types)?;
        layers.index.insert(None, last_layer(&ds, &names, spec.format == Format::Dxf)?);
        // GeoPackage defers creating the table; make it exist before the transaction starts.
        ds.flush_cache()?;
    }
    // GeoPackage: the boxes for the spatial index, bulk-loaded once GDAL has closed the file.
    let boxes = (spec.format == Format::Gpkg).then(Vec::new);
    let mut w = Fill { spec, stem, names: &names, types: &types, srs: &srs, split, layers, boxes };
    // One transaction for the whole file where the driver has them (GeoPackage): per-feature
    // commits would make a million-feature export take minutes.
    let n = match spec.format {
        Format::Gpkg => {
            let mut tx = ds.start_transaction()?;
            let n = w.fill(&mut tx, chunks)?;
            tx.commit()?;
            n
        }
        _ => w.fill(&mut ds, chunks)?,
    };
    if w.layers.index.is_empty() {
        // An empty export is still a valid file with the layer's schema.
        create_layer(spec, &mut ds, stem, &srs, layer_type(T::KIND, None), &names, &types)?;
    }
    ds.close()?;
    if let Some(boxes) = w.boxes {
        rtree::build(target, stem, GPKG_GEOMETRY, GPKG_FID, boxes)?;
    }
    Ok((n, pairs))
}

/// The geometry and id columns of a GeoPackage layer, as `create_layer` names them.
const GPKG_GEOMETRY: &str = "geom";
const GPKG_FID: &str = "fid";

/// The state of writing one dataset.
struct Fill<'a> {
    spec: &'a ExportSpec,
    stem: &'a str,
    names: &'a [String],
    types: &'a [OGRFieldType::Type],
    srs: &'a gdal::spatial_ref::SpatialRef,
    split: bool,
    layers: Layers,
    /// The box of each feature written, where the file's spatial index is built afterwards.
    boxes: Option<Vec<rtree::Cell>>,
}

impl Fill<'_> {
    fn fill<T: Record>(&mut self, ds: &mut Dataset, chunks: Chunks<'_, T>) -> Result<u64, ExportError> {
        let spec = self.spec;
        let to_out = ToOut::new(spec.crs)?;
        let mut n = 0u64;
        while let Some(chunk) = chunks() {
            for r in &chunk {
                let geom = r.geometry();
                let kind = self.split.then(|| kind_of(&geom));
                let (li, fields) = match self.layers.index.get(&kind) {
                    Some(l) => l,
                    None => {
                        let name = match kind {
                            None => self.stem.to_string(),
                            Some(Kind::Point) => format!("{}_point", self.stem),
                            Some(Kind::Line) => format!("{}_line", self.stem),
                            Some(Kind::Polygon) => format!("{}_polygon", self.stem),
                        };
                        create_layer(spec, ds, &name, self.srs, layer_type(T::KIND, kind), self.names, self.types)?;
                        let l = last_layer(ds, self.names, false)?;
                        self.layers.index.entry(kind).or_insert(l)
                    }
                };
                let layer = ds.layer(*li)?;
                let mut f = Feature::new(layer.defn())?;
                let g = to_out.gdal(&geom)?;
                if spec.format == Format::Dxf {
                    let dxf_layer = dxf_layer_name::<T>(r, &spec.class_names);
                    f.set_field_string(f.field_index("Layer")?, &dxf_layer)?;
                    f.set_geometry(g)?;
                    f.create(&layer)?;
                    write_dxf_label(&layer, r, &geom, &to_out, &dxf_layer)?;
                } else {
                    for (i, p) in T::PROPERTIES.iter().enumerate() {
                        if let Some(v) = r.prop(p) {
                            set_value(&mut f, fields[i], self.types[i], v)?;
                        }
                    }
                    let g = promote(g, layer_type(T::KIND, kind))?;
                    let env = (self.boxes.is_some() && !g.is_empty()).then(|| g.envelope());
                    f.set_geometry(g)?;
                    f.create(&layer)?;
                    if let (Some(boxes), Some(e), Some(fid)) = (self.boxes.as_mut(), env, f.fid()) {
                        boxes.push(rtree::Cell::new(fid as i64, e.MinX, e.MaxX, e.MinY, e.MaxY));
                    }
                }
                n += 1;
            }
        }
        Ok(n)
    }
}

fn create_layer(
    spec: &ExportSpec,
    ds: &mut Dataset,
    name: &str,
    srs: &gdal::spatial_ref::SpatialRef,
    ty: OGRwkbGeometryType::Type,
    names: &[String],
    types: &[OGRFieldType::Type],
) -> Result<(), ExportError> {
    let options: &[&str] = match spec.format {
        // UTF-8 text, declared in the .cpg so ArcGIS and QGIS read Chinese right.
        // RESIZE: text fields shrink to their longest value when the file closes.
        Format::Shp => &["ENCODING=UTF-8", "RESIZE=YES"],
        // WKT geometry, a .csvt with the types, and a BOM so Excel reads the UTF-8 as UTF-8.
        Format::Csv => &["GEOMETRY=AS_WKT", "CREATE_CSVT=YES", "WRITE_BOM=YES"],
        // No index from GDAL: `rtree` bulk-loads it after the file is written, 20 times faster
        // than GDAL 3.6 grows it (see `rtree`).
        Format::Gpkg => &["SPATIAL_INDEX=NO", "GEOMETRY_NAME=geom", "FID=fid"],
        Format::Fgb => &["SPATIAL_INDEX=YES"],
        _ => &[],
    };
    let layer = ds.create_layer(LayerOptions { name, srs: Some(srs), ty, options: Some(options) })?;
    if spec.format == Format::Dxf {
        // The DXF writer has a fixed schema (Layer, Text, ...): attributes travel as labels.
        return Ok(());
    }
    for (n, t) in names.iter().zip(types) {
        let fd = gdal::vector::FieldDefn::new(n, *t)?;
        if spec.format == Format::Shp && *t == OGRFieldType::OFTString {
            fd.set_width(254);
        }
        fd.add_to_layer(&layer)?;
    }
    Ok(())
}

/// Polygons as multipolygons and lines as multilines where the layer says so (GeoPackage and
/// FlatGeobuf check a feature's type against its layer's).
fn promote(g: gdal::vector::Geometry, ty: OGRwkbGeometryType::Type) -> Result<gdal::vector::Geometry, ExportError> {
    let gt = g.geometry_type();
    let wrap = match ty {
        OGRwkbGeometryType::wkbMultiPolygon if gt == OGRwkbGeometryType::wkbPolygon => true,
        OGRwkbGeometryType::wkbMultiLineString if gt == OGRwkbGeometryType::wkbLineString => true,
        _ => false,
    };
    if !wrap {
        return Ok(g);
    }
    let mut multi = gdal::vector::Geometry::empty(ty)?;
    multi.add_geometry(g)?;
    Ok(multi)
}

/// One property value into field `i` of type `ty`.
fn set_value(f: &mut Feature<'_>, i: usize, ty: OGRFieldType::Type, v: PropValue<'_>) -> Result<(), ExportError> {
    let text = |v: &PropValue<'_>| match v {
        PropValue::Str(s) => Some(s.to_string()),
        PropValue::Owned(s) => Some(s.clone()),
        _ => None,
    };
    match (ty, &v) {
        (_, PropValue::Null) => {}
        (OGRFieldType::OFTDate, _) => {
            if let Some(d) = text(&v).and_then(|s| chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok()) {
                f.set_field(i, &FieldValue::DateValue(d))?;
            }
        }
        (OGRFieldType::OFTDateTime, _) => {
            if let Some(t) = text(&v).and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok()) {
                f.set_field_datetime(i, t)?;
            }
        }
        (_, PropValue::Num(x)) => f.set_field_double(i, *x)?,
        (_, PropValue::Int(x)) => f.set_field_integer64(i, *x)?,
        (_, PropValue::Bool(b)) => f.set_field_integer(i, *b as i32)?,
        (_, v) => f.set_field_string(i, &crate::model::strip_controls(&text(v).unwrap_or_default()))?,
    }
    Ok(())
}

/// The CAD layer of a feature: components by class (`0118 路灯`), cases by class, the
/// administrative layers by their Chinese title.
fn dxf_layer_name<T: Record>(r: &T, class_names: &HashMap<String, String>) -> String {
    let class = match r.prop("class_code") {
        Some(PropValue::Str(c)) => Some(c.to_string()),
        Some(PropValue::Owned(c)) => Some(c),
        _ => None,
    };
    match class {
        Some(c) => match class_names.get(&c) {
            Some(name) => format!("{c} {name}"),
            None => c,
        },
        // The Chinese part of the collection's title (单元网格).
        None => T::KIND.title().split(' ').next().unwrap_or(T::COLLECTION).to_string(),
    }
}

/// GDAL's DXF header template with the version raised to AutoCAD 2007 (AC1021), the first whose
/// strings are UTF-8 by definition: layer names such as `0118 路灯` then read right in CAD,
/// where the template's AutoCAD 2004 would have them read as Windows-1252.
fn dxf_header() -> Result<tempfile::NamedTempFile, ExportError> {
    // SAFETY: both arguments are NUL-terminated; CPLFindFile returns a path owned by GDAL
    // (or null), which is copied at once.
    let found = unsafe { gdal_sys::CPLFindFile(c"gdal".as_ptr(), c"header.dxf".as_ptr()) };
    if found.is_null() {
        return Err(ExportError::Source("GDAL's header.dxf template was not found (GDAL_DATA)".into()));
    }
    let path = unsafe { std::ffi::CStr::from_ptr(found) }.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&path)?;
    let mut out = tempfile::Builder::new().suffix(".dxf").tempfile()?;
    out.write_all(text.replace("\nAC1018\n", "\nAC1021\n").replace("\nAC1015\n", "\nAC1021\n").as_bytes())?;
    out.flush()?;
    Ok(out)
}

/// The TEXT entity labelling a feature in CAD: "code name" at its interior point, on the
/// feature's layer with the suffix 注记 (annotation), as CAD drawings keep labels apart.
fn write_dxf_label<T: Record, L: LayerAccess>(
    layer: &L,
    r: &T,
    geom: &Geometry<f64>,
    to_out: &ToOut,
    dxf_layer: &str,
) -> Result<(), ExportError> {
    let Some(p) = geom.interior_point() else { return Ok(()) };
    let label = dxf_label(r);
    let (x, y) = to_out.point(p.x(), p.y())?;
    let mut point = gdal::vector::Geometry::empty(OGRwkbGeometryType::wkbPoint)?;
    point.add_point_2d((x, y));
    let mut f = Feature::new(layer.defn())?;
    f.set_field_string(f.field_index("Layer")?, &format!("{dxf_layer} 注记"))?;
    f.set_geometry(point)?;
    // Height in ground units: 2 m in a projected CRS, about 2 m in degrees otherwise.
    let height = if to_out.is_geographic() { "0.00002g" } else { "2g" };
    let style = format!("LABEL(f:\"SimSun\",t:\"{}\",s:{height})", label.replace('"', "'"));
    set_style(&f, &style)?;
    f.create(layer)?;
    Ok(())
}

/// Sets an OGR style string (the DXF writer draws from it); the gdal crate has no setter.
fn set_style(f: &Feature<'_>, style: &str) -> Result<(), ExportError> {
    let style = std::ffi::CString::new(style).map_err(|e| ExportError::Source(e.to_string()))?;
    // SAFETY: the feature handle is valid for the lifetime of `f`; OGR copies the string.
    unsafe { gdal_sys::OGR_F_SetStyleString(f.c_feature(), style.as_ptr()) };
    Ok(())
}

/// The label text of a feature: its code (or id) and name where it has one.
pub fn dxf_label<T: Record>(r: &T) -> String {
    let get = |p: &str| match r.prop(p) {
        Some(PropValue::Str(s)) => Some(s.to_string()),
        Some(PropValue::Owned(s)) => Some(s),
        Some(PropValue::Int(i)) => Some(i.to_string()),
        _ => None,
    };
    let key = get("code").or_else(|| get("id")).unwrap_or_default();
    match get("name") {
        Some(name) if !name.is_empty() => format!("{key} {name}"),
        _ => key,
    }
}
