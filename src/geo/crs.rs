//! The `crs=` parameter of the API: which coordinate reference systems a client
//! may speak, and converting its longitude/latitude to and from storage (CGCS2000).
//!
//! Axis order at the API is always longitude, latitude, whatever the EPSG
//! registry says about EPSG:4326 or EPSG:4490, as in GeoJSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::china;

/// Mean Earth radius (IUGG R1) used by [`haversine_m`], in metres.
pub const EARTH_MEAN_RADIUS_M: f64 = 6_371_008.8;

/// WGS84 semi-major axis, in metres.
const WGS84_A: f64 = 6_378_137.0;
/// WGS84 first eccentricity squared.
const WGS84_E2: f64 = 0.006_694_379_990_141_317;

/// Longest user string quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 64;

const OGC_CRS84_URI: &str = "http://www.opengis.net/def/crs/ogc/1.3/crs84";
const OGC_EPSG_URI_PREFIX: &str = "http://www.opengis.net/def/crs/epsg/0/";

/// Errors of the `crs=` parameter and of coordinate checks. The messages are
/// shown to API users as 400 responses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrsError {
    /// The `crs` value is not one this API recognises.
    #[error(
        "unknown CRS \"{0}\": expected one of wgs84, cgcs2000, gcj02, bd09, EPSG:<code> \
         (such as EPSG:4326 or EPSG:4490) or an OGC CRS URI \
         (http://www.opengis.net/def/crs/OGC/1.3/CRS84, http://www.opengis.net/def/crs/EPSG/0/<code>)"
    )]
    Unknown(String),
    /// A well-formed EPSG code that this server cannot convert (yet).
    #[error(
        "CRS EPSG:{0} is not supported: coordinates must be longitude/latitude in \
         wgs84 (EPSG:4326), cgcs2000 (EPSG:4490), gcj02 or bd09"
    )]
    Unsupported(u32),
    /// A longitude/latitude that is not finite or not on the globe.
    #[error(
        "coordinate ({lon}, {lat}) is out of range: longitude must be within [-180, 180] \
         and latitude within [-90, 90] degrees"
    )]
    OutOfRange {
        /// The offending longitude, degrees.
        lon: f64,
        /// The offending latitude, degrees.
        lat: f64,
    },
    /// A valid coordinate whose conversion leaves the globe; happens only with
    /// BD-09 within metres of the poles or the antimeridian.
    #[error("coordinate ({lon}, {lat}) has no valid equivalent when converted from {from} to {to}")]
    NoEquivalent {
        /// The input longitude, degrees.
        lon: f64,
        /// The input latitude, degrees.
        lat: f64,
        /// Canonical name of the source CRS.
        from: String,
        /// Canonical name of the target CRS.
        to: String,
    },
}

/// A coordinate reference system a client may use for longitude/latitude.
///
/// Parse it from the `crs=` query parameter with [`str::parse`]; it
/// (de)serialises as its canonical [`Crs::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Crs {
    /// WGS84 (EPSG:4326, OGC CRS84), what GPS receivers report.
    Wgs84,
    /// CGCS2000 (EPSG:4490), China's national datum and this server's storage CRS.
    Cgcs2000,
    /// GCJ-02, the offset CRS of Amap (Gaode), Tencent and other Chinese web maps.
    Gcj02,
    /// BD-09, Baidu Maps' further offset of GCJ-02.
    Bd09,
    /// Any other EPSG code. Parsing accepts it so that the error names the code;
    /// conversion reports [`CrsError::Unsupported`] except for 4326 and 4490.
    Epsg(u32),
}

impl Crs {
    /// The canonical short name: `wgs84`, `cgcs2000`, `gcj02`, `bd09` or `EPSG:<n>`.
    ///
    /// `Epsg(4326)` and `Epsg(4490)` are named `wgs84` and `cgcs2000`, so that
    /// parsing a name always gives back an equivalent CRS.
    pub fn name(&self) -> String {
        match self.canonical() {
            Crs::Wgs84 => "wgs84".to_owned(),
            Crs::Cgcs2000 => "cgcs2000".to_owned(),
            Crs::Gcj02 => "gcj02".to_owned(),
            Crs::Bd09 => "bd09".to_owned(),
            Crs::Epsg(n) => format!("EPSG:{n}"),
        }
    }

    /// The same CRS with `Epsg(4326)` / `Epsg(4490)` folded into the named variants.
    pub fn canonical(self) -> Crs {
        match self {
            Crs::Epsg(4326) => Crs::Wgs84,
            Crs::Epsg(4490) => Crs::Cgcs2000,
            other => other,
        }
    }

    /// Converts a client's longitude/latitude in this CRS to storage
    /// longitude/latitude (CGCS2000).
    ///
    /// CGCS2000 is taken as equal to WGS84: the two differ by centimetres,
    /// which is below what the project's data resolve. Fails with
    /// [`CrsError::OutOfRange`] for an invalid input and
    /// [`CrsError::Unsupported`] for an EPSG code other than 4326/4490.
    pub fn to_cgcs2000(&self, lon: f64, lat: f64) -> Result<(f64, f64), CrsError> {
        check_lon_lat(lon, lat)?;
        let out = match self.canonical() {
            Crs::Wgs84 | Crs::Cgcs2000 => (lon, lat),
            Crs::Gcj02 => china::gcj02_to_wgs84(lon, lat),
            Crs::Bd09 => china::bd09_to_wgs84(lon, lat),
            Crs::Epsg(n) => return Err(CrsError::Unsupported(n)),
        };
        self.checked_output(lon, lat, out, Direction::ToStorage)
    }

    /// Converts a storage longitude/latitude (CGCS2000) to this CRS, for responses.
    ///
    /// The inverse of [`Crs::to_cgcs2000`] (to well below a millimetre), with
    /// the same errors.
    pub fn from_cgcs2000(&self, lon: f64, lat: f64) -> Result<(f64, f64), CrsError> {
        check_lon_lat(lon, lat)?;
        let out = match self.canonical() {
            Crs::Wgs84 | Crs::Cgcs2000 => (lon, lat),
            Crs::Gcj02 => china::wgs84_to_gcj02(lon, lat),
            Crs::Bd09 => china::wgs84_to_bd09(lon, lat),
            Crs::Epsg(n) => return Err(CrsError::Unsupported(n)),
        };
        self.checked_output(lon, lat, out, Direction::FromStorage)
    }

    /// The Baidu offset shifts every point, so a valid input right at a pole or
    /// the antimeridian can come out off the globe; report that rather than
    /// store or return an invalid coordinate.
    fn checked_output(
        &self,
        lon: f64,
        lat: f64,
        out: (f64, f64),
        direction: Direction,
    ) -> Result<(f64, f64), CrsError> {
        if check_lon_lat(out.0, out.1).is_ok() {
            return Ok(out);
        }
        let (from, to) = match direction {
            Direction::ToStorage => (self.name(), Crs::Cgcs2000.name()),
            Direction::FromStorage => (Crs::Cgcs2000.name(), self.name()),
        };
        Err(CrsError::NoEquivalent { lon, lat, from, to })
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToStorage,
    FromStorage,
}

impl fmt::Display for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Maps an EPSG code to the named variants where there is one.
fn from_epsg(code: u32) -> Crs {
    Crs::Epsg(code).canonical()
}

/// Parses the digits of an EPSG code; anything else (signs, spaces, empty) is refused.
fn parse_code(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl FromStr for Crs {
    type Err = CrsError;

    /// Accepts, case-insensitively and ignoring surrounding whitespace:
    /// `wgs84`, `cgcs2000`, `gcj02`, `bd09`, `EPSG:<n>`,
    /// `http://www.opengis.net/def/crs/OGC/1.3/CRS84` and
    /// `http://www.opengis.net/def/crs/EPSG/0/<n>` (also with `https`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || CrsError::Unknown(s.chars().take(MAX_QUOTED_CHARS).collect());
        let lower = s.trim().to_ascii_lowercase();
        // Some clients send the OGC URIs with https; they name the same CRS.
        let lower = match lower.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => lower,
        };
        match lower.as_str() {
            "wgs84" => return Ok(Crs::Wgs84),
            "cgcs2000" => return Ok(Crs::Cgcs2000),
            "gcj02" => return Ok(Crs::Gcj02),
            "bd09" => return Ok(Crs::Bd09),
            OGC_CRS84_URI => return Ok(Crs::Wgs84),
            _ => {}
        }
        let digits =
            lower.strip_prefix("epsg:").or_else(|| lower.strip_prefix(OGC_EPSG_URI_PREFIX)).ok_or_else(unknown)?;
        parse_code(digits).map(from_epsg).ok_or_else(unknown)
    }
}

impl Serialize for Crs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Crs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks that a longitude/latitude pair is finite and on the globe:
/// longitude in [-180, 180], latitude in [-90, 90] degrees.
pub fn check_lon_lat(lon: f64, lat: f64) -> Result<(), CrsError> {
    // `contains` is false for NaN, and infinities are outside the ranges.
    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) {
        Ok(())
    } else {
        Err(CrsError::OutOfRange { lon, lat })
    }
}

/// Great-circle distance in metres between two (lon, lat) points in degrees, on
/// a sphere of the mean Earth radius ([`EARTH_MEAN_RADIUS_M`]).
///
/// Within 0.5 % of the ellipsoidal distance; fine for search radii and tests,
/// not for surveying.
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.1.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.0 - a.0).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    // Clamp: rounding can push h a hair above 1 for antipodal points.
    2.0 * EARTH_MEAN_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Half-widths (dlon, dlat), in degrees, of a lon/lat envelope around a point at
/// latitude `lat` that contains every point within `m` metres of it.
///
/// Conservative by construction, for distances measured on the WGS84
/// ellipsoid as well as with [`haversine_m`]: latitude changes at most 1/M_min
/// radians per metre (M_min, the smallest meridian radius of curvature, is at
/// the equator and is smaller than the mean radius), and longitude at most
/// 1/(R·cos φ) at the most poleward latitude the circle reaches, with R the
/// mean radius (the ellipsoid's parallels are longer than the sphere's). When
/// the circle reaches a pole, `dlon` is 180 (every longitude). A zero,
/// negative or NaN radius gives (0, 0).
pub fn metres_to_degrees(m: f64, lat: f64) -> (f64, f64) {
    if m.is_nan() || m <= 0.0 {
        return (0.0, 0.0);
    }
    // A millimetre per kilometre of slack absorbs the rounding of the
    // trigonometry in whatever distance the caller checks afterwards.
    let m = m * (1.0 + 1e-6);
    let meridian_radius_min = WGS84_A * (1.0 - WGS84_E2);
    let dlat = (m / meridian_radius_min).to_degrees();
    let worst_lat = lat.abs() + dlat;
    if worst_lat.is_nan() || worst_lat >= 90.0 {
        return (180.0, dlat);
    }
    let parallel_radius_min = EARTH_MEAN_RADIUS_M * worst_lat.to_radians().cos();
    let dlon = (m / parallel_radius_min).to_degrees().min(180.0);
    (dlon, dlat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::geo::{Destination, Geodesic, Haversine, Point};

    #[test]
    fn parses_short_names_case_insensitively() {
        assert_eq!("wgs84".parse(), Ok(Crs::Wgs84));
        assert_eq!("WGS84".parse(), Ok(Crs::Wgs84));
        assert_eq!("CGCS2000".parse(), Ok(Crs::Cgcs2000));
        assert_eq!("gcj02".parse(), Ok(Crs::Gcj02));
        assert_eq!("Gcj02".parse(), Ok(Crs::Gcj02));
        assert_eq!(" bd09 ".parse(), Ok(Crs::Bd09));
    }

    #[test]
    fn parses_epsg_codes() {
        assert_eq!("EPSG:4326".parse(), Ok(Crs::Wgs84));
        assert_eq!("epsg:4326".parse(), Ok(Crs::Wgs84));
        assert_eq!("EPSG:4490".parse(), Ok(Crs::Cgcs2000));
        assert_eq!("EPSG:3857".parse(), Ok(Crs::Epsg(3857)));
        assert_eq!("EPSG:4547".parse(), Ok(Crs::Epsg(4547)));
    }

    #[test]
    fn parses_ogc_uris() {
        assert_eq!("http://www.opengis.net/def/crs/OGC/1.3/CRS84".parse(), Ok(Crs::Wgs84));
        assert_eq!("https://www.opengis.net/def/crs/OGC/1.3/CRS84".parse(), Ok(Crs::Wgs84));
        assert_eq!("http://www.opengis.net/def/crs/EPSG/0/4326".parse(), Ok(Crs::Wgs84));
        assert_eq!("http://www.opengis.net/def/crs/EPSG/0/4490".parse(), Ok(Crs::Cgcs2000));
        assert_eq!("http://www.opengis.net/def/crs/EPSG/0/3857".parse(), Ok(Crs::Epsg(3857)));
    }

    #[test]
    fn rejects_unknown_strings() {
        for bad in [
            "",
            "wgs",
            "wgs-84",
            "gcj",
            "EPSG:",
            "EPSG:abc",
            "EPSG:-4326",
            "EPSG:+4326",
            "EPSG: 4326",
            "EPSG:99999999999",
            "EPSG4326",
            "http://www.opengis.net/def/crs/OGC/1.3/CRS83",
            "http://www.opengis.net/def/crs/EPSG/0/",
            "http://example.com/def/crs/EPSG/0/4326",
        ] {
            let err = bad.parse::<Crs>().expect_err(bad);
            assert!(matches!(err, CrsError::Unknown(_)), "{bad}: {err:?}");
        }
        let msg = "mars".parse::<Crs>().unwrap_err().to_string();
        assert!(msg.contains("\"mars\"") && msg.contains("wgs84") && msg.contains("EPSG:"), "{msg}");
        // Huge inputs are not echoed back whole.
        let long = "x".repeat(10_000);
        let msg = long.parse::<Crs>().unwrap_err().to_string();
        assert!(msg.len() < 600, "{}", msg.len());
    }

    #[test]
    fn names_are_canonical_and_parse_back() {
        for crs in [Crs::Wgs84, Crs::Cgcs2000, Crs::Gcj02, Crs::Bd09, Crs::Epsg(3857)] {
            assert_eq!(crs.name().parse(), Ok(crs));
        }
        assert_eq!(Crs::Epsg(4326).name(), "wgs84");
        assert_eq!(Crs::Epsg(4490).name(), "cgcs2000");
        assert_eq!(Crs::Epsg(3857).name(), "EPSG:3857");
        assert_eq!(Crs::Gcj02.to_string(), "gcj02");
    }

    #[test]
    fn serde_uses_the_name() {
        assert_eq!(serde_json::to_string(&Crs::Bd09).ok(), Some("\"bd09\"".to_owned()));
        let crs: Crs = serde_json::from_str("\"EPSG:4490\"").expect("valid crs");
        assert_eq!(crs, Crs::Cgcs2000);
        assert!(serde_json::from_str::<Crs>("\"nope\"").is_err());
    }

    #[test]
    fn round_trips_through_storage() {
        let points = [(88.88, 29.27), (116.397, 39.908), (106.55, 29.56), (2.35, 48.85), (139.7, 35.7)];
        for crs in [Crs::Wgs84, Crs::Cgcs2000, Crs::Gcj02, Crs::Bd09, Crs::Epsg(4326), Crs::Epsg(4490)] {
            for (lon, lat) in points {
                let stored = crs.to_cgcs2000(lon, lat).expect("valid input");
                let back = crs.from_cgcs2000(stored.0, stored.1).expect("valid input");
                assert!(haversine_m((lon, lat), back) < 1e-3, "{crs}: ({lon}, {lat}) -> {back:?}");
                let out = crs.from_cgcs2000(lon, lat).expect("valid input");
                let stored = crs.to_cgcs2000(out.0, out.1).expect("valid input");
                assert!(haversine_m((lon, lat), stored) < 1e-3, "{crs}: ({lon}, {lat}) -> {stored:?}");
            }
        }
    }

    #[test]
    fn storage_conversion_applies_the_offsets() {
        assert_eq!(Crs::Wgs84.to_cgcs2000(116.397, 39.908), Ok((116.397, 39.908)));
        assert_eq!(Crs::Cgcs2000.from_cgcs2000(116.397, 39.908), Ok((116.397, 39.908)));
        let gcj = Crs::Gcj02.from_cgcs2000(120.0, 40.0).expect("valid input");
        assert!((gcj.0 - 120.005_675_683_554_86).abs() < 1e-9 && (gcj.1 - 40.001_304_789_601_9).abs() < 1e-9);
        // Beijing in Baidu coordinates is several hundred metres from WGS84.
        let bd = Crs::Bd09.from_cgcs2000(116.397, 39.908).expect("valid input");
        assert!(haversine_m(bd, (116.397, 39.908)) > 500.0);
    }

    #[test]
    fn unsupported_epsg_is_reported() {
        assert_eq!(Crs::Epsg(3857).to_cgcs2000(1.0, 1.0), Err(CrsError::Unsupported(3857)));
        assert_eq!(Crs::Epsg(4547).from_cgcs2000(1.0, 1.0), Err(CrsError::Unsupported(4547)));
        let msg = CrsError::Unsupported(3857).to_string();
        assert!(msg.contains("EPSG:3857"), "{msg}");
    }

    #[test]
    fn out_of_range_is_rejected() {
        assert_eq!(check_lon_lat(0.0, 0.0), Ok(()));
        assert_eq!(check_lon_lat(180.0, 90.0), Ok(()));
        assert_eq!(check_lon_lat(-180.0, -90.0), Ok(()));
        for (lon, lat) in [
            (180.000001, 0.0),
            (-181.0, 0.0),
            (0.0, 90.5),
            (0.0, -91.0),
            (f64::NAN, 0.0),
            (0.0, f64::NAN),
            (f64::INFINITY, 0.0),
            (0.0, f64::NEG_INFINITY),
        ] {
            assert!(matches!(check_lon_lat(lon, lat), Err(CrsError::OutOfRange { .. })), "({lon}, {lat})");
            for crs in [Crs::Wgs84, Crs::Gcj02, Crs::Bd09, Crs::Epsg(3857)] {
                assert!(matches!(crs.to_cgcs2000(lon, lat), Err(CrsError::OutOfRange { .. })));
                assert!(matches!(crs.from_cgcs2000(lon, lat), Err(CrsError::OutOfRange { .. })));
            }
        }
        // Latitude first by mistake: Beijing as (lat, lon) fails on latitude.
        assert!(check_lon_lat(39.908, 116.397).is_err());
    }

    #[test]
    fn baidu_offset_off_the_globe_is_an_error_not_a_bad_point() {
        let err = Crs::Bd09.from_cgcs2000(0.0, 90.0).expect_err("pushed past the pole");
        assert!(matches!(err, CrsError::NoEquivalent { .. }), "{err:?}");
        assert!(err.to_string().contains("bd09"));
    }

    #[test]
    fn haversine_known_distances() {
        // One degree of a great circle on the mean sphere.
        let one_deg = EARTH_MEAN_RADIUS_M * std::f64::consts::PI / 180.0;
        assert!((haversine_m((0.0, 0.0), (1.0, 0.0)) - one_deg).abs() < 1e-6);
        assert!((haversine_m((10.0, 0.0), (10.0, 1.0)) - one_deg).abs() < 1e-6);
        assert_eq!(haversine_m((116.397, 39.908), (116.397, 39.908)), 0.0);
        // Agrees with the geo crate's haversine (same radius).
        let d = haversine_m((116.397, 39.908), (121.4737, 31.2304));
        let g = ::geo::Distance::distance(&Haversine, Point::new(116.397, 39.908), Point::new(121.4737, 31.2304));
        assert!((d - g).abs() < 1e-6 * g, "{d} vs {g}");
        // Antipodes: half the circumference, no NaN.
        let half = haversine_m((0.0, 0.0), (180.0, 0.0));
        assert!((half - EARTH_MEAN_RADIUS_M * std::f64::consts::PI).abs() < 1e-3);
    }

    #[test]
    fn metres_to_degrees_is_conservative() {
        let centres = [(116.397, 39.908), (88.88, 29.27), (110.0, 0.0), (20.0, -60.0), (126.0, 53.5), (0.0, 80.0)];
        for (lon, lat) in centres {
            for m in [1.0, 100.0, 1_000.0, 50_000.0, 500_000.0] {
                let (dlon, dlat) = metres_to_degrees(m, lat);
                let mut bearing = 0.0;
                while bearing < 360.0 {
                    for p in [
                        Geodesic.destination(Point::new(lon, lat), bearing, m),
                        Haversine.destination(Point::new(lon, lat), bearing, m),
                    ] {
                        let mut ddlon = (p.x() - lon).abs();
                        if ddlon > 180.0 {
                            ddlon = 360.0 - ddlon;
                        }
                        assert!(ddlon <= dlon, "m={m} at ({lon},{lat}) bearing {bearing}: {ddlon} > {dlon}");
                        assert!((p.y() - lat).abs() <= dlat, "m={m} at ({lon},{lat}) bearing {bearing}");
                    }
                    bearing += 5.0;
                }
                // Not wildly oversized either: within 1 % of the spherical extent for small radii.
                if m <= 1_000.0 && lat.abs() < 60.0 {
                    let sphere_dlat = (m / EARTH_MEAN_RADIUS_M).to_degrees();
                    assert!(dlat < sphere_dlat * 1.01);
                }
            }
        }
    }

    #[test]
    fn metres_to_degrees_edge_cases() {
        assert_eq!(metres_to_degrees(0.0, 30.0), (0.0, 0.0));
        assert_eq!(metres_to_degrees(-5.0, 30.0), (0.0, 0.0));
        assert_eq!(metres_to_degrees(f64::NAN, 30.0), (0.0, 0.0));
        // A circle around the pole spans every longitude.
        assert_eq!(metres_to_degrees(1_000.0, 89.999).0, 180.0);
        assert_eq!(metres_to_degrees(1_000.0, -90.0).0, 180.0);
        assert_eq!(metres_to_degrees(f64::INFINITY, 0.0).0, 180.0);
    }
}
