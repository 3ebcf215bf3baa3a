//! Rankings (top N grids, communities, streets, districts or classes by count, with the change
//! against the period just before) and the peak-time profile (hour of day by day of week).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

use super::units::Units;
use super::{Filter, Item};
use crate::model::Str;

/// What a ranking groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    /// Aggregation units (grid, community, street, district).
    Units,
    /// Class codes.
    Class,
}

/// One ranked row.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub code: Str,
    pub count: u64,
    pub previous: u64,
    /// Rank by count, 1 for the most; ties share a rank.
    pub rank: usize,
}

impl Ranked {
    /// The change against the previous period as a fraction of it; `None` from nothing.
    pub fn change_rate(&self) -> Option<f64> {
        (self.previous > 0).then(|| (self.count as f64 - self.previous as f64) / self.previous as f64)
    }
}

/// The previous period of `[from, to)`: as long, just before.
pub fn previous_period(from: DateTime<Utc>, to: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (from - (to - from), from)
}

/// Counts per key in the current period and the previous one, ranked by the current count
/// (then by code, so ties list in a stable order), the top `top`. `each` is called with the
/// filter widened to both periods and hands every record to the closure it is given.
pub fn rank(
    filter: &Filter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    top: usize,
    key: impl Fn(&Item<'_>) -> Option<Str>,
    each: impl FnOnce(&Filter, &mut dyn FnMut(&Item<'_>)),
) -> Vec<Ranked> {
    let (pfrom, _) = previous_period(from, to);
    let wide = Filter { from: Some(pfrom), to: Some(to), ..filter.clone() };
    let mut counts: HashMap<Str, (u64, u64)> = HashMap::new();
    each(&wide, &mut |it| {
        let Some(k) = key(it) else { return };
        let e = counts.entry(k).or_default();
        match it.at {
            Some(t) if t >= from => e.0 += 1,
            _ => e.1 += 1,
        }
    });
    let mut rows: Vec<Ranked> = counts
        .into_iter()
        .filter(|(_, (c, _))| *c > 0)
        .map(|(code, (count, previous))| Ranked { code, count, previous, rank: 0 })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
    for i in 0..rows.len() {
        rows[i].rank = if i > 0 && rows[i].count == rows[i - 1].count { rows[i - 1].rank } else { i + 1 };
    }
    rows.truncate(top);
    rows
}

/// The unit code of an item for a ranking by units.
pub fn unit_key(units: &Units) -> impl Fn(&Item<'_>) -> Option<Str> + '_ {
    move |it| units.unit_of(it.grid, it.lon, it.lat).map(|u| units.codes[u].clone())
}

/// Counts by day of week (0 Monday .. 6 Sunday) and hour of day, in the city's time.
pub fn peak_profile(city: FixedOffset, each: impl FnOnce(&mut dyn FnMut(&Item<'_>))) -> [[u64; 24]; 7] {
    let mut m = [[0u64; 24]; 7];
    each(&mut |it| {
        if let Some(t) = it.at {
            let local = t.with_timezone(&city);
            m[local.weekday().num_days_from_monday() as usize][local.hour() as usize] += 1;
        }
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn item(class: &str, at: DateTime<Utc>) -> Item<'_> {
        Item { lon: 0.0, lat: 0.0, grid: None, at: Some(at), class, status: "", source: "", level: None, dept: None }
    }

    #[test]
    fn ranks_with_change_and_ties() {
        let t = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 4, 0, 0).unwrap();
        let (from, to) = (t(11), t(21));
        // Previous period: 1st to 11th.
        let records = vec![
            item("0110", t(12)),
            item("0110", t(13)),
            item("0110", t(2)),
            item("0409", t(14)),
            item("0409", t(15)),
            item("0201", t(16)),
            item("0201", t(3)),
            item("0201", t(4)),
            // Before the previous period: not counted at all.
            item("0201", Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()),
        ];
        let rows = rank(
            &Filter::default(),
            from,
            to,
            10,
            |it| Some(Str::from(it.class)),
            |f, g| {
                for r in &records {
                    if f.keeps(r) {
                        g(r)
                    }
                }
            },
        );
        let got: Vec<(&str, u64, u64, usize)> =
            rows.iter().map(|r| (r.code.as_str(), r.count, r.previous, r.rank)).collect();
        assert_eq!(got, vec![("0110", 2, 1, 1), ("0409", 2, 0, 1), ("0201", 1, 2, 3)]);
        assert_eq!(rows[0].change_rate(), Some(1.0));
        assert_eq!(rows[1].change_rate(), None);
        assert_eq!(rows[2].change_rate(), Some(-0.5));
    }

    #[test]
    fn peak_profile_in_city_time() {
        let beijing = crate::model::city_tz();
        // Sunday 1 November 2026 23:30 UTC is Monday 07:30 in Beijing.
        let it = item("0110", Utc.with_ymd_and_hms(2026, 11, 1, 23, 30, 0).unwrap());
        let m = peak_profile(beijing, |f| f(&it));
        assert_eq!(m[0][7], 1);
        assert_eq!(m.iter().flatten().sum::<u64>(), 1);
    }
}
