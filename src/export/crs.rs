//! Coordinate systems of files going out and coming in. Storage is CGCS2000 longitude/latitude
//! (EPSG:4490). Projections go through GDAL's OSR (PROJ) with the traditional GIS axis order
//! (x = easting or longitude), whatever order the EPSG registry gives; the Chinese offset
//! systems GCJ-02 and BD-09, which no registry knows, go through [`crate::geo::china`].

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use geo::{Geometry, MapCoords};

use super::ExportError;
use crate::geo::Crs;
use crate::geo::china;

/// The CRS an export is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutCrs {
    /// An EPSG system: 4490, 4326, 3857 or a CGCS2000 3-degree Gauss-Krüger zone (4513-4554).
    Epsg(u32),
    /// GCJ-02 longitude/latitude (Amap, Tencent), labelled WGS84 as Chinese tools expect.
    Gcj02,
    /// BD-09 longitude/latitude (Baidu), labelled WGS84 likewise.
    Bd09,
}

impl OutCrs {
    /// Parses the `crs` of an export: `cgcs2000` (the default), `wgs84`, `gcj02`, `bd09` or
    /// `EPSG:n` for the codes above. Other EPSG codes are refused rather than guessed: PROJ
    /// would convert to a foreign datum with a ballpark shift, off by metres without a word.
    pub fn parse(s: &str) -> Result<OutCrs, ExportError> {
        let c: Crs = s.parse().map_err(|e: crate::geo::CrsError| ExportError::Crs(e.to_string()))?;
        match c.canonical() {
            Crs::Cgcs2000 => Ok(OutCrs::Epsg(4490)),
            Crs::Wgs84 => Ok(OutCrs::Epsg(4326)),
            Crs::Gcj02 => Ok(OutCrs::Gcj02),
            Crs::Bd09 => Ok(OutCrs::Bd09),
            Crs::Epsg(n) if n == 3857 || (4513..=4554).contains(&n) => Ok(OutCrs::Epsg(n)),
            Crs::Epsg(n) => Err(ExportError::Crs(format!(
                "exports are written in EPSG:4490 (cgcs2000), EPSG:4326 (wgs84), EPSG:3857, the CGCS2000 \
                 Gauss-Krüger zones EPSG:4513-4554, gcj02 or bd09; not EPSG:{n}"
            ))),
        }
    }

    /// The EPSG code the file is labelled with.
    pub fn epsg(&self) -> u32 {
        match self {
            OutCrs::Epsg(n) => *n,
            OutCrs::Gcj02 | OutCrs::Bd09 => 4326,
        }
    }

    /// Short name for file names and messages.
    pub fn name(&self) -> String {
        match self {
            OutCrs::Epsg(4490) => "cgcs2000".into(),
            OutCrs::Epsg(4326) => "wgs84".into(),
            OutCrs::Epsg(n) => format!("epsg{n}"),
            OutCrs::Gcj02 => "gcj02".into(),
            OutCrs::Bd09 => "bd09".into(),
        }
    }

    /// True for longitude/latitude systems.
    pub fn is_geographic(&self) -> bool {
        matches!(self, OutCrs::Epsg(4490 | 4326) | OutCrs::Gcj02 | OutCrs::Bd09)
    }
}

/// A spatial reference in traditional GIS axis order.
pub fn srs(epsg: u32) -> Result<SpatialRef, ExportError> {
    let mut s = SpatialRef::from_epsg(epsg).map_err(|e| ExportError::Crs(format!("EPSG:{epsg}: {e}")))?;
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(s)
}

/// Storage coordinates to an export CRS.
pub struct ToOut {
    crs: OutCrs,
    transform: Option<CoordTransform>,
}

impl ToOut {
    pub fn new(crs: OutCrs) -> Result<ToOut, ExportError> {
        let transform = match crs {
            // CGCS2000 and WGS84 differ by centimetres: the same numbers, named honestly.
            OutCrs::Epsg(4490 | 4326) | OutCrs::Gcj02 | OutCrs::Bd09 => None,
            OutCrs::Epsg(n) => Some(CoordTransform::new(&srs(4490)?, &srs(n)?)?),
        };
        Ok(ToOut { crs, transform })
    }

    /// The geometry in the export CRS, as a GDAL geometry.
    pub fn gdal(&self, g: &Geometry<f64>) -> Result<gdal::vector::Geometry, ExportError> {
        use gdal::vector::ToGdal;
        let mut out = match self.crs {
            OutCrs::Gcj02 => offset(g, china::wgs84_to_gcj02).to_gdal()?,
            OutCrs::Bd09 => offset(g, china::wgs84_to_bd09).to_gdal()?,
            _ => g.to_gdal()?,
        };
        if let Some(t) = &self.transform {
            out.transform_inplace(t)?;
        }
        Ok(out)
    }

    pub fn is_geographic(&self) -> bool {
        self.crs.is_geographic()
    }

    /// A storage point in the export CRS.
    pub fn point(&self, x: f64, y: f64) -> Result<(f64, f64), ExportError> {
        match self.crs {
            OutCrs::Gcj02 => Ok(china::wgs84_to_gcj02(x, y)),
            OutCrs::Bd09 => Ok(china::wgs84_to_bd09(x, y)),
            _ => match &self.transform {
                None => Ok((x, y)),
                Some(t) => {
                    let (mut xs, mut ys, mut zs) = ([x], [y], [0.0]);
                    t.transform_coords(&mut xs, &mut ys, &mut zs)?;
                    Ok((xs[0], ys[0]))
                }
            },
        }
    }
}

fn offset(g: &Geometry<f64>, f: fn(f64, f64) -> (f64, f64)) -> Geometry<f64> {
    g.map_coords(|c| {
        let (x, y) = f(c.x, c.y);
        geo::coord! { x: x, y: y }
    })
}

/// How a source file's coordinates reach storage.
pub enum FromSource {
    /// Already CGCS2000 or WGS84 longitude/latitude.
    Identity,
    /// Through PROJ from the file's (or the given) CRS.
    Proj(CoordTransform),
    /// Longitude/latitude in an offset system, undone point by point.
    Offset(fn(f64, f64) -> (f64, f64)),
}

impl FromSource {
    /// From a CRS given on the command line (`--crs`): wgs84, cgcs2000, gcj02, bd09 or EPSG:n.
    pub fn given(s: &str) -> Result<(FromSource, String), ExportError> {
        let c: Crs = s.parse().map_err(|e: crate::geo::CrsError| ExportError::Crs(e.to_string()))?;
        Ok(match c.canonical() {
            Crs::Cgcs2000 | Crs::Wgs84 => (FromSource::Identity, c.name()),
            Crs::Gcj02 => (FromSource::Offset(china::gcj02_to_wgs84), c.name()),
            Crs::Bd09 => (FromSource::Offset(china::bd09_to_wgs84), c.name()),
            Crs::Epsg(n) => (FromSource::from_srs(&srs(n)?)?, c.name()),
        })
    }

    /// From the spatial reference a file declares.
    pub fn from_srs(s: &SpatialRef) -> Result<FromSource, ExportError> {
        let mut s = s.clone();
        s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let code = s.auth_code().ok();
        if s.is_geographic() && matches!(code, Some(4490 | 4326)) {
            return Ok(FromSource::Identity);
        }
        Ok(FromSource::Proj(CoordTransform::new(&s, &srs(4490)?)?))
    }

    /// Brings a GDAL geometry to storage coordinates.
    pub fn apply(&self, g: &mut gdal::vector::Geometry) -> Result<(), ExportError> {
        if let FromSource::Proj(t) = self {
            g.transform_inplace(t)?;
        }
        Ok(())
    }

    /// Undoes an offset system on a geometry already in longitude/latitude.
    pub fn finish(&self, g: Geometry<f64>) -> Geometry<f64> {
        match self {
            FromSource::Offset(f) => offset(&g, *f),
            _ => g,
        }
    }
}

/// The Gauss-Krüger zone a zone-prefixed easting names (EPSG:4513-4533 for zones 25-45), for
/// files without a CRS whose eastings carry the zone number in front (39 500 000 m = zone 39).
pub fn zone_prefixed_epsg(x: f64) -> Option<u32> {
    let zone = (x / 1_000_000.0).floor();
    ((25.0..=45.0).contains(&zone) && (x - zone * 1_000_000.0) > 0.0).then(|| 4513 + (zone as u32 - 25))
}
