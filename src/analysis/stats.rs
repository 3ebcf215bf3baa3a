//! The statistics as pure functions over counts and a neighbour graph: Getis-Ord Gi*, local and
//! global Moran's I, the Benjamini-Hochberg false-discovery-rate correction and the Mann-Kendall
//! trend test. No I/O and no units here: what a unit is and who its neighbours are is decided in
//! [`super::units`]. Each formula follows the peer it is checked against (esda, pymannkendall,
//! scipy), named at the function.

/// A symmetric neighbour graph in compressed rows: the neighbours of unit `i` are
/// `nbrs[offsets[i]..offsets[i + 1]]`, never `i` itself, each list ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neighbours {
    offsets: Vec<u32>,
    nbrs: Vec<u32>,
}

impl Neighbours {
    /// From one neighbour list per unit; lists are sorted, deduplicated, and cleared of the unit
    /// itself. Lists are taken as given: a caller wanting symmetry must give both directions.
    pub fn from_lists(lists: Vec<Vec<u32>>) -> Self {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut nbrs = Vec::new();
        offsets.push(0);
        for (i, mut l) in lists.into_iter().enumerate() {
            l.sort_unstable();
            l.dedup();
            nbrs.extend(l.into_iter().filter(|&j| j as usize != i));
            offsets.push(nbrs.len() as u32);
        }
        Neighbours { offsets, nbrs }
    }

    /// Units in the graph.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The neighbours of unit `i`.
    pub fn of(&self, i: usize) -> &[u32] {
        &self.nbrs[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Number of neighbours of unit `i`.
    pub fn degree(&self, i: usize) -> usize {
        (self.offsets[i + 1] - self.offsets[i]) as usize
    }
}

/// Two-sided p-value of a standard normal z-score: `2 * (1 - Φ(|z|))`, computed as
/// `erfc(|z| / √2)` so that it keeps its precision far in the tail.
pub fn p_two_sided(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The ArcGIS confidence bin of a z-score: ±3 beyond 99% (|z| > 2.576), ±2 beyond 95%
/// (1.960), ±1 beyond 90% (1.645), 0 otherwise; positive for hot, negative for cold.
pub fn bin_of_z(z: f64) -> i8 {
    let level = if z.abs() > 2.576 {
        3
    } else if z.abs() > 1.960 {
        2
    } else if z.abs() > 1.645 {
        1
    } else {
        0
    };
    if z < 0.0 { -level } else { level }
}

/// The bin from a (corrected) p-value and the sign of z: ±3 at p ≤ 0.01, ±2 at 0.05, ±1 at 0.10.
pub fn bin_of_p(z: f64, p: f64) -> i8 {
    let level = if p <= 0.01 {
        3
    } else if p <= 0.05 {
        2
    } else if p <= 0.10 {
        1
    } else {
        0
    };
    if z < 0.0 { -level } else { level }
}

/// Getis-Ord Gi* of one unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GiStar {
    /// `None` where the statistic is undefined: every value equal, or the unit's neighbourhood
    /// is the whole study area.
    pub z: Option<f64>,
    /// Two-sided.
    pub p: Option<f64>,
}

/// Gi* with binary weights that include the unit itself, the mean and the population variance
/// taken over all units (Getis and Ord 1995; esda's `G_Local(y, w, transform="B", star=True)`):
///
/// z_i = (Σ_j w_ij x_j − x̄ W_i) / (s √((n W_i − W_i²) / (n − 1))), W_i = |N(i)| + 1.
pub fn gi_star(x: &[f64], w: &Neighbours) -> Vec<GiStar> {
    assert_eq!(x.len(), w.len(), "one value per unit");
    let m = GiMoments::of(x);
    (0..x.len())
        .map(|i| {
            let nb = w.of(i);
            let sum = x[i] + nb.iter().map(|&j| x[j as usize]).sum::<f64>();
            m.gi_star(sum, (nb.len() + 1) as f64)
        })
        .collect()
}

/// What Gi* needs of all the values: their number, mean and population standard deviation.
#[derive(Debug, Clone, Copy)]
pub struct GiMoments {
    n: f64,
    mean: f64,
    s: f64,
}

impl GiMoments {
    pub fn of(x: &[f64]) -> GiMoments {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| v * v).sum::<f64>() / n - mean * mean;
        GiMoments { n, mean, s: var.max(0.0).sqrt() }
    }

    /// Gi* of a neighbourhood (the unit included) of `wi` binary weights whose values sum to `sum`.
    pub fn gi_star(&self, sum: f64, wi: f64) -> GiStar {
        let GiMoments { n, mean, s } = *self;
        let den = s * ((n * wi - wi * wi) / (n - 1.0)).sqrt();
        let z = (den > 0.0 && den.is_finite()).then(|| (sum - mean * wi) / den);
        GiStar { z, p: z.map(p_two_sided) }
    }
}

/// The Benjamini-Hochberg adjusted p-values (q-values) of the defined entries of `p`, as
/// `scipy.stats.false_discovery_control(p, method="bh")` gives them: a unit is significant at
/// false discovery rate α when its q ≤ α. Undefined entries stay undefined and are not tests.
pub fn fdr_bh(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    let m = order.len() as f64;
    order.sort_by(|&a, &b| p[a].unwrap().total_cmp(&p[b].unwrap()));
    let mut q = vec![None; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i].unwrap() * m / (rank + 1) as f64);
        q[i] = Some(running.min(1.0));
    }
    q
}

/// Local Moran's I of one unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalMoran {
    /// z_i times the spatial lag of z (the GeoDa and spdep convention; esda's `Is` is (n−1)/n of it).
    pub i: f64,
    /// Analytic expectation under total randomisation, −w_i / (n − 1).
    pub e: f64,
    /// Analytic variance under total randomisation (Anselin 1995, in Sokal's form as esda has it).
    pub v: f64,
    /// `None` for a unit without neighbours or with no variance.
    pub z: Option<f64>,
    pub p: Option<f64>,
    /// The standardised value and its spatial lag, for the quadrant.
    pub value_z: f64,
    pub lag: f64,
}

impl LocalMoran {
    /// `HH`, `LH`, `LL` or `HL`: the value against the mean, then its neighbours' (a value or
    /// lag exactly at the mean counts as low, as in esda).
    pub fn quadrant(&self) -> &'static str {
        match (self.value_z > 0.0, self.lag > 0.0) {
            (true, true) => "HH",
            (false, true) => "LH",
            (false, false) => "LL",
            (true, false) => "HL",
        }
    }
}

/// The values standardised by the population standard deviation; `None` when they are all equal.
fn standardise(x: &[f64]) -> Option<Vec<f64>> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    (sd > 0.0 && sd.is_finite()).then(|| x.iter().map(|v| (v - mean) / sd).collect())
}

/// The row-standardised spatial lag of `z` at `i`: the mean over its neighbours, 0 for an island.
fn lag(z: &[f64], w: &Neighbours, i: usize) -> f64 {
    let nb = w.of(i);
    if nb.is_empty() { 0.0 } else { nb.iter().map(|&j| z[j as usize]).sum::<f64>() / nb.len() as f64 }
}

/// Local Moran's I with row-standardised weights (esda's `Moran_Local(y, w, transformation="r")`
/// moments `EI` and `VI`). `None` when every value is equal (nothing to standardise).
pub fn local_moran(x: &[f64], w: &Neighbours) -> Option<Vec<LocalMoran>> {
    assert_eq!(x.len(), w.len(), "one value per unit");
    let z = standardise(x)?;
    let n = z.len() as f64;
    let n1 = n - 1.0;
    let m2 = z.iter().map(|v| v * v).sum::<f64>() / n;
    let m4 = z.iter().map(|v| v.powi(4)).sum::<f64>() / n;
    let b2 = m4 / (m2 * m2);
    Some(
        (0..z.len())
            .map(|i| {
                let d = w.degree(i);
                let (wi, wi2) = if d == 0 { (0.0, 0.0) } else { (1.0, 1.0 / d as f64) };
                let l = lag(&z, w, i);
                let value = z[i] * l / m2;
                let e = -wi / n1;
                let v = wi2 * (n - b2) / n1 + (wi * wi - wi2) * (2.0 * b2 - n) / (n1 * (n - 2.0)) - e * e;
                let zs = (v > 0.0 && v.is_finite()).then(|| (value - e) / v.sqrt());
                LocalMoran { i: value, e, v, z: zs, p: zs.map(p_two_sided), value_z: z[i], lag: l }
            })
            .collect(),
    )
}

/// Global Moran's I under randomisation with row-standardised weights (esda's `Moran`: `I`,
/// `EI`, `VI_rand`, `z_rand`, two-sided `p_rand`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalMoran {
    pub i: f64,
    pub e: f64,
    pub v: f64,
    pub z: Option<f64>,
    pub p: Option<f64>,
}

/// Global Moran's I; `None` when every value is equal or there are fewer than four units (the
/// variance divides by (n−1)(n−2)(n−3)). The graph must be symmetric.
pub fn global_moran(x: &[f64], w: &Neighbours) -> Option<GlobalMoran> {
    if x.len() < 4 {
        return None;
    }
    let z = standardise(x)?;
    let n = z.len() as f64;
    let inv = |i: usize| 1.0 / w.degree(i) as f64;
    let (mut s0, mut s1, mut s2, mut num) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..z.len() {
        let nb = w.of(i);
        if nb.is_empty() {
            continue;
        }
        s0 += 1.0;
        num += z[i] * lag(&z, w, i);
        let mut col = 0.0;
        for &j in nb {
            let j = j as usize;
            s1 += (inv(i) + inv(j)).powi(2);
            col += inv(j);
        }
        s2 += (1.0 + col).powi(2);
    }
    s1 /= 2.0;
    if s0 == 0.0 {
        return None;
    }
    let z2ss: f64 = z.iter().map(|v| v * v).sum();
    let i = n / s0 * num / z2ss;
    let e = -1.0 / (n - 1.0);
    let k = (z.iter().map(|v| v.powi(4)).sum::<f64>() / n) / (z2ss / n).powi(2);
    let (n2, s02) = (n * n, s0 * s0);
    let a = n * ((n2 - 3.0 * n + 3.0) * s1 - n * s2 + 3.0 * s02);
    let b = k * ((n2 - n) * s1 - 2.0 * n * s2 + 6.0 * s02);
    let v = (a - b) / ((n - 1.0) * (n - 2.0) * (n - 3.0) * s02) - e * e;
    let zs = (v > 0.0 && v.is_finite()).then(|| (i - e) / v.sqrt());
    Some(GlobalMoran { i, e, v, z: zs, p: zs.map(p_two_sided) })
}

/// The Mann-Kendall trend test of a series, as `pymannkendall.original_test` computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    /// Kendall's S: concordant minus discordant pairs in time order.
    pub s: f64,
    /// Var(S), corrected for ties.
    pub var_s: f64,
    /// With the continuity correction of one.
    pub z: f64,
    /// Two-sided.
    pub p: f64,
    /// S over the number of pairs, n(n−1)/2.
    pub tau: f64,
}

/// Mann-Kendall over `x` in time order (ties: equal values exactly). `None` for fewer than two
/// values. A series of one value repeated has no variance: z 0, p 1.
pub fn mann_kendall(x: &[f64]) -> Option<MannKendall> {
    let n = x.len();
    if n < 2 {
        return None;
    }
    let mut s = 0.0;
    for k in 0..n - 1 {
        for j in k + 1..n {
            s += match x[j].partial_cmp(&x[k]) {
                Some(std::cmp::Ordering::Greater) => 1.0,
                Some(std::cmp::Ordering::Less) => -1.0,
                _ => 0.0,
            };
        }
    }
    let nf = n as f64;
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1.0f64;
    for k in 1..=n {
        if k < n && sorted[k] == sorted[k - 1] {
            run += 1.0;
        } else {
            ties += run * (run - 1.0) * (2.0 * run + 5.0);
            run = 1.0;
        }
    }
    let var_s = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if var_s <= 0.0 {
        0.0
    } else if s > 0.0 {
        (s - 1.0) / var_s.sqrt()
    } else if s < 0.0 {
        (s + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    Some(MannKendall { s, var_s, z, p: p_two_sided(z), tau: s / (0.5 * nf * (nf - 1.0)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path 0 - 1 - 2 - ... - (n-1).
    fn path(n: usize) -> Neighbours {
        Neighbours::from_lists(
            (0..n)
                .map(|i| {
                    let mut l = Vec::new();
                    if i > 0 {
                        l.push(i as u32 - 1);
                    }
                    if i + 1 < n {
                        l.push(i as u32 + 1);
                    }
                    l
                })
                .collect(),
        )
    }

    #[test]
    fn neighbour_lists_are_cleaned() {
        let w = Neighbours::from_lists(vec![vec![1, 0, 1, 2], vec![0], vec![0]]);
        assert_eq!(w.of(0), &[1, 2]);
        assert_eq!(w.degree(1), 1);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn p_values_and_bins() {
        assert!((p_two_sided(1.959963984540054) - 0.05).abs() < 1e-15);
        assert!((p_two_sided(0.0) - 1.0).abs() < 1e-15);
        assert_eq!(bin_of_z(2.6), 3);
        assert_eq!(bin_of_z(-2.0), -2);
        assert_eq!(bin_of_z(1.7), 1);
        assert_eq!(bin_of_z(1.6), 0);
        assert_eq!(bin_of_p(-1.0, 0.04), -2);
        assert_eq!(bin_of_p(1.0, 0.2), 0);
    }

    #[test]
    fn gi_star_of_a_hand_worked_path() {
        // x = [0, 0, 6, 0]: n 4, mean 1.5, population variance 9 - 2.25 = 6.75.
        let g = gi_star(&[0.0, 0.0, 6.0, 0.0], &path(4));
        let s = 6.75f64.sqrt();
        // Unit 2 and its neighbours 1, 3: sum 6, W 3.
        let z2 = (6.0 - 1.5 * 3.0) / (s * ((4.0 * 3.0 - 9.0) / 3.0f64).sqrt());
        assert!((g[2].z.unwrap() - z2).abs() < 1e-12);
        // Unit 0 and its neighbour 1: sum 0, W 2.
        let z0 = (0.0 - 1.5 * 2.0) / (s * ((8.0 - 4.0) / 3.0f64).sqrt());
        assert!((g[0].z.unwrap() - z0).abs() < 1e-12);
        // No variance: undefined rather than infinite.
        assert!(gi_star(&[2.0; 4], &path(4)).iter().all(|g| g.z.is_none()));
    }

    #[test]
    fn benjamini_hochberg_matches_the_textbook() {
        let q = fdr_bh(&[Some(0.01), Some(0.04), None, Some(0.03), Some(0.5)]);
        // Sorted: 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.06 -> min(0.06, 0.0533) ...
        assert!((q[0].unwrap() - 0.04).abs() < 1e-15);
        assert!((q[3].unwrap() - 0.04 * 4.0 / 3.0).abs() < 1e-15);
        assert!((q[1].unwrap() - 0.04 * 4.0 / 3.0).abs() < 1e-15);
        assert_eq!(q[2], None);
        assert!((q[4].unwrap() - 0.5).abs() < 1e-15);
    }

    #[test]
    fn local_moran_quadrants_and_island() {
        let mut lists: Vec<Vec<u32>> = path(5).offsets.windows(2).map(|_| Vec::new()).collect();
        lists[0] = vec![1];
        lists[1] = vec![0];
        lists[2] = vec![3];
        lists[3] = vec![2];
        // Unit 4 is an island.
        let w = Neighbours::from_lists(lists);
        let lm = local_moran(&[10.0, 9.0, 0.0, 1.0, 5.0], &w).unwrap();
        assert_eq!(lm[0].quadrant(), "HH");
        assert_eq!(lm[2].quadrant(), "LL");
        assert!(lm[0].i > 0.0);
        assert_eq!(lm[4].z, None);
        assert!(local_moran(&[1.0; 5], &w).is_none());
    }

    #[test]
    fn global_moran_sees_clustering() {
        let w = path(8);
        let clustered = global_moran(&[1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0], &w).unwrap();
        let alternating = global_moran(&[1.0, 9.0, 1.0, 9.0, 1.0, 9.0, 1.0, 9.0], &w).unwrap();
        assert!(clustered.i > 0.5 && clustered.z.unwrap() > 0.0);
        assert!(alternating.i < -0.5 && alternating.z.unwrap() < 0.0);
        assert!((clustered.e + 1.0 / 7.0).abs() < 1e-15);
    }

    #[test]
    fn mann_kendall_with_ties() {
        let mk = mann_kendall(&[1.0, 2.0, 2.0, 3.0, 5.0]).unwrap();
        // Pairs: 10, one tie (2, 2): S = 9. Var = (5*4*15 - 2*1*9)/18 = 282/18.
        assert_eq!(mk.s, 9.0);
        assert!((mk.var_s - 282.0 / 18.0).abs() < 1e-12);
        assert!((mk.z - 8.0 / (282.0f64 / 18.0).sqrt()).abs() < 1e-12);
        assert!((mk.tau - 0.9).abs() < 1e-15);
        let flat = mann_kendall(&[3.0; 6]).unwrap();
        assert_eq!((flat.z, flat.p), (0.0, 1.0));
        assert!(mann_kendall(&[1.0]).is_none());
    }
}
