//! Small exact-enough planar predicates in local metres, for building the tiling: cheaper than
//! going through `geo` for rings of a handful of vertices, and free of its snapping.

pub(super) type P = [f64; 2];

/// Twice the signed area of triangle (a, b, c): positive when counter-clockwise.
pub(super) fn orient(a: P, b: P, c: P) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Signed area of a ring given without its closing vertex (shoelace).
pub(super) fn signed_area(pts: &[P]) -> f64 {
    let n = pts.len();
    let mut s = 0.0;
    for i in 0..n {
        let a = pts[i];
        let b = pts[(i + 1) % n];
        s += a[0] * b[1] - b[0] * a[1];
    }
    s / 2.0
}

fn on_segment(a: P, b: P, p: P) -> bool {
    p[0] >= a[0].min(b[0]) && p[0] <= a[0].max(b[0]) && p[1] >= a[1].min(b[1]) && p[1] <= a[1].max(b[1])
}

/// Whether closed segments ab and cd share any point.
pub(super) fn segments_touch(a: P, b: P, c: P, d: P) -> bool {
    let d1 = orient(c, d, a);
    let d2 = orient(c, d, b);
    let d3 = orient(a, b, c);
    let d4 = orient(a, b, d);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0)) && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0)) {
        return true;
    }
    (d1 == 0.0 && on_segment(c, d, a))
        || (d2 == 0.0 && on_segment(c, d, b))
        || (d3 == 0.0 && on_segment(a, b, c))
        || (d4 == 0.0 && on_segment(a, b, d))
}

/// Whether a ring (without closing vertex) is simple and counter-clockwise with positive area.
pub(super) fn ring_is_simple_ccw(pts: &[P]) -> bool {
    let n = pts.len();
    if n < 3 || signed_area(pts) <= 0.0 {
        return false;
    }
    for a in 0..n {
        let a1 = (a + 1) % n;
        for b in a + 1..n {
            let b1 = (b + 1) % n;
            if a1 == b || b1 == a {
                // Neighbouring segments share a vertex; they must not fold back onto each other.
                let (v, p, q) = if a1 == b { (pts[b], pts[a], pts[b1]) } else { (pts[a], pts[a1], pts[b]) };
                if orient(p, v, q) == 0.0 && (p[0] - v[0]) * (q[0] - v[0]) + (p[1] - v[1]) * (q[1] - v[1]) > 0.0 {
                    return false;
                }
                continue;
            }
            if segments_touch(pts[a], pts[a1], pts[b], pts[b1]) {
                return false;
            }
        }
    }
    true
}

/// Crossing-number point-in-ring test (ring without closing vertex); boundary points may go
/// either way, which is fine for points drawn from a continuous distribution.
pub(super) fn in_ring(pts: &[P], p: P) -> bool {
    let n = pts.len();
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (pts[i], pts[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Whether the convex polygon `inner` lies inside the simple ring `outer` without touching its
/// boundary: no edges meet, and one vertex of `inner` is inside.
pub(super) fn convex_inside(outer: &[P], inner: &[P]) -> bool {
    for i in 0..inner.len() {
        let (a, b) = (inner[i], inner[(i + 1) % inner.len()]);
        for j in 0..outer.len() {
            if segments_touch(a, b, outer[j], outer[(j + 1) % outer.len()]) {
                return false;
            }
        }
    }
    in_ring(outer, inner[0])
}

pub(super) fn centroid(pts: &[P]) -> P {
    let n = pts.len();
    let (mut cx, mut cy, mut a2) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (pts[i], pts[(i + 1) % n]);
        let cr = a[0] * b[1] - b[0] * a[1];
        a2 += cr;
        cx += (a[0] + b[0]) * cr;
        cy += (a[1] + b[1]) * cr;
    }
    [cx / (3.0 * a2), cy / (3.0 * a2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let sq = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert!(ring_is_simple_ccw(&sq));
        let mut cw = sq;
        cw.reverse();
        assert!(!ring_is_simple_ccw(&cw));
        let bow = [[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]];
        assert!(!ring_is_simple_ccw(&bow));
        assert!(in_ring(&sq, [5.0, 5.0]));
        assert!(!in_ring(&sq, [15.0, 5.0]));
        assert_eq!(centroid(&sq), [5.0, 5.0]);
        let small = [[2.0, 2.0], [4.0, 2.0], [4.0, 4.0], [2.0, 4.0]];
        assert!(convex_inside(&sq, &small));
        let poking = [[8.0, 2.0], [12.0, 2.0], [12.0, 4.0], [8.0, 4.0]];
        assert!(!convex_inside(&sq, &poking));
    }
}
