//! The Chinese map offsets: WGS84 ⇄ GCJ-02 (“Mars coordinates”) ⇄ BD-09 (Baidu).
//!
//! Both offsets are the publicly circulated formulas. Their inverses have no
//! closed form, so the inverses here are iterated until they undo the forward
//! formula to far below a millimetre; the usual single-pass inverse found in
//! many code bases is off by metres, which is visible on a city-scale map.

use std::f64::consts::PI;

/// Semi-major axis of the Krasovsky 1940 ellipsoid, which the GCJ-02 formula uses.
const KRASOVSKY_A: f64 = 6_378_245.0;
/// First eccentricity squared of the Krasovsky 1940 ellipsoid (the published
/// 0.00669342162296594323, to f64 precision).
const KRASOVSKY_EE: f64 = 0.006_693_421_622_965_943;
/// The Baidu formula's angular constant (π·3000/180).
const X_PI: f64 = PI * 3000.0 / 180.0;

/// Stop iterating an inverse once a step moves the estimate less than this (degrees).
const INVERSE_TOLERANCE_DEG: f64 = 1e-12;
/// Upper bound on inverse iterations. The fixed-point maps contract by a factor
/// of roughly 1e-3 per step, so convergence takes 3–4 steps; the bound only
/// guards against pathological input such as NaN.
const INVERSE_MAX_ITERATIONS: usize = 30;

/// Whether GCJ-02 leaves this point alone.
///
/// This is the rough rectangle every public implementation uses, not the real
/// border: the offset has to agree with what other software produces, and
/// they all use this box.
fn out_of_china(lon: f64, lat: f64) -> bool {
    // Written as a negated "inside" test so that NaN counts as outside and is
    // passed through unchanged instead of being run through the polynomials.
    !((72.004..=137.8347).contains(&lon) && (0.8293..=55.8271).contains(&lat))
}

fn transform_lat(x: f64, y: f64) -> f64 {
    let mut ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    ret += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    ret += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    ret += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    ret
}

fn transform_lon(x: f64, y: f64) -> f64 {
    let mut ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    ret += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    ret += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    ret += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    ret
}

/// The GCJ-02 offset (dlon, dlat) in degrees at a WGS84 point, ignoring the
/// China box.
fn gcj02_offset(lon: f64, lat: f64) -> (f64, f64) {
    let dlat = transform_lat(lon - 105.0, lat - 35.0);
    let dlon = transform_lon(lon - 105.0, lat - 35.0);
    let rad_lat = lat.to_radians();
    let sin_lat = rad_lat.sin();
    let magic = 1.0 - KRASOVSKY_EE * sin_lat * sin_lat;
    let sqrt_magic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrt_magic) * PI);
    let dlon = (dlon * 180.0) / (KRASOVSKY_A / sqrt_magic * rad_lat.cos() * PI);
    (dlon, dlat)
}

/// Solve `forward(p) == target` for `p` by fixed-point iteration
/// `p -= forward(p) - target`, starting from `start`.
///
/// This converges because both offsets vary slowly: the Jacobian of
/// `forward(p) - p` is of the order of 1e-4 (GCJ-02) and 1e-3 (BD-09).
fn invert(forward: impl Fn(f64, f64) -> (f64, f64), target: (f64, f64), start: (f64, f64)) -> (f64, f64) {
    let (mut lon, mut lat) = start;
    for _ in 0..INVERSE_MAX_ITERATIONS {
        let (flon, flat) = forward(lon, lat);
        let dlon = flon - target.0;
        let dlat = flat - target.1;
        lon -= dlon;
        lat -= dlat;
        if dlon.abs() < INVERSE_TOLERANCE_DEG && dlat.abs() < INVERSE_TOLERANCE_DEG {
            break;
        }
    }
    (lon, lat)
}

/// Converts a WGS84 longitude/latitude (degrees) to GCJ-02.
///
/// Points outside the rough China rectangle (lon 72.004–137.8347,
/// lat 0.8293–55.8271) are returned unchanged, as every public implementation
/// does.
pub fn wgs84_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lon, lat) {
        return (lon, lat);
    }
    let (dlon, dlat) = gcj02_offset(lon, lat);
    (lon + dlon, lat + dlat)
}

/// Converts a GCJ-02 longitude/latitude (degrees) to WGS84.
///
/// The inverse is iterated until `wgs84_to_gcj02` of the result reproduces the
/// input to about 1e-12 degrees (micrometres). Points outside the China
/// rectangle are returned unchanged.
///
/// Within a few hundred metres of the rectangle's edge the forward formula is
/// discontinuous; there the iteration solves the unboxed formula, so the result
/// may lie just outside the rectangle. No populated Chinese territory is near
/// those edges.
pub fn gcj02_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lon, lat) {
        return (lon, lat);
    }
    let forward = |lon: f64, lat: f64| {
        let (dlon, dlat) = gcj02_offset(lon, lat);
        (lon + dlon, lat + dlat)
    };
    // The offset evaluated at the GCJ-02 point is a good first guess (the
    // common single-pass inverse, metres off); iteration removes the rest.
    let (dlon, dlat) = gcj02_offset(lon, lat);
    invert(forward, (lon, lat), (lon - dlon, lat - dlat))
}

/// Converts a GCJ-02 longitude/latitude (degrees) to BD-09 (Baidu).
///
/// The Baidu formula has no China test: it shifts every point.
pub fn gcj02_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let (x, y) = (lon, lat);
    let z = (x * x + y * y).sqrt() + 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) + 0.000003 * (x * X_PI).cos();
    (z * theta.cos() + 0.0065, z * theta.sin() + 0.006)
}

/// Converts a BD-09 (Baidu) longitude/latitude (degrees) to GCJ-02.
///
/// Starts from the public single-pass inverse and iterates until
/// `gcj02_to_bd09` of the result reproduces the input to about 1e-12 degrees.
pub fn bd09_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    let x = lon - 0.0065;
    let y = lat - 0.006;
    let z = (x * x + y * y).sqrt() - 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) - 0.000003 * (x * X_PI).cos();
    let start = (z * theta.cos(), z * theta.sin());
    invert(gcj02_to_bd09, (lon, lat), start)
}

/// Converts a WGS84 longitude/latitude (degrees) to BD-09 via GCJ-02.
///
/// Outside China the GCJ-02 step does nothing but the Baidu step still
/// shifts the point, exactly as composing the public formulas does.
pub fn wgs84_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let (lon, lat) = wgs84_to_gcj02(lon, lat);
    gcj02_to_bd09(lon, lat)
}

/// Converts a BD-09 longitude/latitude (degrees) to WGS84 via GCJ-02; the exact
/// inverse of [`wgs84_to_bd09`] to well below a millimetre.
pub fn bd09_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    let (lon, lat) = bd09_to_gcj02(lon, lat);
    gcj02_to_wgs84(lon, lat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::crs::haversine_m;

    /// Points across China, from Xinjiang and Tibet to the coast and Hainan.
    fn china_points() -> Vec<(f64, f64)> {
        let mut points = vec![
            (88.88, 29.27),      // Shigatse
            (116.397, 39.908),   // Beijing, Tiananmen
            (106.55, 29.56),     // Chongqing
            (121.4737, 31.2304), // Shanghai
            (113.2644, 23.1291), // Guangzhou
            (87.6168, 43.8256),  // Urumqi
            (126.6424, 45.7567), // Harbin
            (110.3312, 20.0311), // Haikou
            (75.9897, 39.4677),  // Kashgar
        ];
        // A regular grid over the box, away from its discontinuous edges.
        let mut lon = 75.0;
        while lon <= 135.0 {
            let mut lat = 3.0;
            while lat <= 53.0 {
                points.push((lon, lat));
                lat += 2.5;
            }
            lon += 2.5;
        }
        points
    }

    #[test]
    fn forward_matches_published_vectors() {
        // WGS84 (120, 40): the standard formula gives (120.00567568355486,
        // 40.0013047896019), the value the coord-convert README prints. The
        // (120.006037, 40.001262) sometimes quoted is ~31 m off in longitude
        // and does not come from this formula.
        let (lon, lat) = wgs84_to_gcj02(120.0, 40.0);
        assert!((lon - 120.005_675_683_554_86).abs() < 1e-9, "lon {lon}");
        assert!((lat - 40.001_304_789_601_9).abs() < 1e-9, "lat {lat}");

        // The wandergis/coordtransform fixtures at Tiananmen (116.404, 39.915),
        // reproduced by many ports.
        let (lon, lat) = wgs84_to_gcj02(116.404, 39.915);
        assert!((lon - 116.410_244_499_169_38).abs() < 1e-9 && (lat - 39.916_404_281_501_64).abs() < 1e-9);
        let (lon, lat) = gcj02_to_bd09(116.404, 39.915);
        assert!((lon - 116.410_369_493_710_29).abs() < 1e-9 && (lat - 39.921_336_993_510_21).abs() < 1e-9);
    }

    #[test]
    fn inverses_refine_the_published_single_pass_values() {
        // The same fixtures publish single-pass inverses: gcj02_to_wgs84 gives
        // (116.39775550083061, 39.91359571849836) and bd09_to_gcj02 gives
        // (116.39762729119315, 39.90865673957631). The iterated results stay
        // within centimetres of them but, unlike them, map back exactly.
        let input = (116.404, 39.915);
        let wgs = gcj02_to_wgs84(input.0, input.1);
        assert!(haversine_m(wgs, (116.397_755_500_830_61, 39.913_595_718_498_36)) < 0.2);
        let fwd = wgs84_to_gcj02(wgs.0, wgs.1);
        assert!((fwd.0 - input.0).abs() < 1e-11 && (fwd.1 - input.1).abs() < 1e-11, "{fwd:?}");
        let single_fwd = wgs84_to_gcj02(116.397_755_500_830_61, 39.913_595_718_498_36);
        assert!(haversine_m(single_fwd, input) > 0.01);

        let gcj = bd09_to_gcj02(input.0, input.1);
        assert!(haversine_m(gcj, (116.397_627_291_193_15, 39.908_656_739_576_31)) < 0.2);
        let fwd = gcj02_to_bd09(gcj.0, gcj.1);
        assert!((fwd.0 - input.0).abs() < 1e-11 && (fwd.1 - input.1).abs() < 1e-11, "{fwd:?}");
    }

    #[test]
    fn gcj02_round_trip_is_sub_millimetre() {
        for (lon, lat) in china_points() {
            let gcj = wgs84_to_gcj02(lon, lat);
            assert!(haversine_m((lon, lat), gcj) > 1.0, "no offset applied at ({lon}, {lat})");
            let back = gcj02_to_wgs84(gcj.0, gcj.1);
            assert!(
                (back.0 - lon).abs() < 1e-8 && (back.1 - lat).abs() < 1e-8,
                "({lon}, {lat}) -> {gcj:?} -> {back:?}"
            );
            assert!(haversine_m((lon, lat), back) < 1e-3);
        }
    }

    #[test]
    fn bd09_round_trip_is_sub_millimetre() {
        for (lon, lat) in china_points() {
            let bd = wgs84_to_bd09(lon, lat);
            let back = bd09_to_wgs84(bd.0, bd.1);
            assert!((back.0 - lon).abs() < 1e-8 && (back.1 - lat).abs() < 1e-8, "({lon}, {lat}) -> {bd:?} -> {back:?}");
            assert!(haversine_m((lon, lat), back) < 1e-3);
        }
    }

    #[test]
    fn bd09_to_gcj02_is_exact_inverse() {
        for (lon, lat) in china_points() {
            let bd = gcj02_to_bd09(lon, lat);
            let gcj = bd09_to_gcj02(bd.0, bd.1);
            assert!((gcj.0 - lon).abs() < 1e-9 && (gcj.1 - lat).abs() < 1e-9);
            // And the other direction: BD-09 input, GCJ-02 output, back to BD-09.
            let gcj = bd09_to_gcj02(lon, lat);
            let bd = gcj02_to_bd09(gcj.0, gcj.1);
            assert!((bd.0 - lon).abs() < 1e-9 && (bd.1 - lat).abs() < 1e-9);
        }
    }

    #[test]
    fn outside_china_is_unchanged() {
        for (lon, lat) in [(2.35, 48.85), (139.7, 35.7), (-74.0, 40.7), (0.0, 0.0)] {
            assert_eq!(wgs84_to_gcj02(lon, lat), (lon, lat));
            assert_eq!(gcj02_to_wgs84(lon, lat), (lon, lat));
        }
    }

    #[test]
    fn non_finite_input_does_not_hang_or_panic() {
        assert!(wgs84_to_gcj02(f64::NAN, 30.0).0.is_nan());
        assert!(gcj02_to_wgs84(f64::NAN, f64::NAN).0.is_nan());
        assert!(bd09_to_gcj02(f64::NAN, 30.0).0.is_nan());
        let _ = bd09_to_wgs84(f64::INFINITY, 30.0);
    }

    #[test]
    fn single_pass_inverse_is_metres_off_but_iterated_is_not() {
        let mut worst_single = 0.0_f64;
        let mut worst_iterated = 0.0_f64;
        for (lon, lat) in china_points() {
            let gcj = wgs84_to_gcj02(lon, lat);
            // The widespread one-step inverse: subtract the offset evaluated at
            // the GCJ-02 point instead of at the (unknown) WGS84 point.
            let (dlon, dlat) = gcj02_offset(gcj.0, gcj.1);
            let single = (gcj.0 - dlon, gcj.1 - dlat);
            worst_single = worst_single.max(haversine_m((lon, lat), single));
            worst_iterated = worst_iterated.max(haversine_m((lon, lat), gcj02_to_wgs84(gcj.0, gcj.1)));
        }
        assert!(worst_single > 0.5, "single-pass worst error {worst_single} m");
        assert!(worst_iterated < 1e-3, "iterated worst error {worst_iterated} m");
    }
}
