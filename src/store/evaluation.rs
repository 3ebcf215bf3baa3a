//! The evaluation counts (综合评价) as the store computes them: the units a report is broken
//! down by, the counts per unit, the one SQL statement both databases run, and the period it
//! covers. Rates, scores, grades and ranks are made from these in `cases::evaluation`.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What units a report is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Dept,
    District,
    Street,
    Community,
    Grid,
}

impl By {
    pub const ALL: [By; 5] = [By::Dept, By::District, By::Street, By::Community, By::Grid];

    pub fn parse(s: &str) -> Option<By> {
        By::ALL.into_iter().find(|b| b.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            By::Dept => "dept",
            By::District => "district",
            By::Street => "street",
            By::Community => "community",
            By::Grid => "grid",
        }
    }

    /// For regions above the grid: the region's key and the joins from grid rows (`t.unit`) up
    /// the hierarchy to it (the grid knows its community, the community its street, the street
    /// its district).
    fn region_joins(self) -> Option<(&'static str, &'static str)> {
        const GRID: &str = " JOIN grids g ON g.code = t.unit";
        const COMMUNITY: &str = " JOIN grids g ON g.code = t.unit JOIN communities m ON m.code = g.community_code";
        const STREET: &str = " JOIN grids g ON g.code = t.unit JOIN communities m ON m.code = g.community_code \
                              JOIN streets s ON s.code = m.street_code";
        match self {
            By::Dept | By::Grid => None,
            By::Community => Some(("g.community_code", GRID)),
            By::Street => Some(("m.street_code", COMMUNITY)),
            By::District => Some(("s.district_code", STREET)),
        }
    }
}

/// Declares [`Counts`] from one list of names, so the struct, its column order and its reading
/// from a row cannot drift apart.
macro_rules! counts {
    ($($name:ident),* $(,)?) => {
        /// What the store counts per unit, in the order of [`counts_sql`]'s columns after the key.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Counts {
            $(pub $name: i64,)*
        }

        impl Counts {
            /// The counts' names, in column order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            /// Number of count columns.
            pub const LEN: usize = Self::NAMES.len();

            /// Counts from their values in column order.
            pub fn from_slice(v: &[i64]) -> Counts {
                assert_eq!(v.len(), Self::LEN, "one value per count");
                let mut values = v.iter().copied();
                Counts { $($name: values.next().unwrap_or_default(),)* }
            }
        }

        impl std::ops::AddAssign for Counts {
            fn add_assign(&mut self, other: Counts) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counts!(
    reports,
    public_reports,
    valid_reports,
    filed,
    voided,
    due_to_dispatch,
    dispatched,
    dispatched_on_time,
    due_to_handle,
    handled,
    handled_on_time,
    reworked,
    due_to_close,
    closed,
    closed_on_time,
);

/// The SQL a store speaks, where the query must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// A GeoPackage keeps times as text in DATETIME columns, whose numeric affinity makes SQLite
    /// try to read the bound time as a number at every comparison, a few million times a year
    /// of cases. `+column` has no affinity, so the facts compare text with text.
    Sqlite,
}

/// The query both stores run: one row per unit with its key and the [`Counts`]. Parameters:
/// `$1` the period's first instant, `$2` the instant after it, `$3` the as-of instant (times as
/// the backend stores them). `FILTER` aggregates run in PostgreSQL and SQLite alike.
///
/// Each case's facts are worked out once (the inner select), then counted; regions above the
/// grid add up the grids' rows, so the hierarchy is joined for tens of thousands of grid rows
/// rather than for every case.
pub fn counts_sql(by: By, dialect: Dialect) -> String {
    // Each fact as of `$3`; a milestone never reached (NULL) is false.
    let facts = [
        ("pub", "c.source IN ('public', 'hotline')"),
        ("valid", "c.status NOT IN ('reported', 'rejected')"),
        ("f", "coalesce(c.filed_at <= $3, false)"),
        ("v", "coalesce(c.voided_at <= $3, false)"),
        ("d", "coalesce(c.dispatched_at <= $3, false)"),
        ("d_due", "coalesce(c.dispatch_due_at <= $3, false)"),
        ("d_ok", "coalesce(c.dispatched_at <= c.dispatch_due_at, false)"),
        ("h", "coalesce(c.handled_at <= $3, false)"),
        ("h_ok", "coalesce(c.handled_at <= c.deadline_at, false)"),
        ("rw", "c.reworks > 0"),
        ("late", "coalesce(c.deadline_at <= $3, false)"),
        ("cl", "coalesce(c.closed_at <= $3, false)"),
        ("cl_ok", "coalesce(c.closed_at <= c.deadline_at, false)"),
    ];
    // In the order of `Counts`.
    let counts = [
        "true",
        "pub",
        "valid",
        "f",
        "f AND v",
        "f AND NOT v AND (d OR d_due)",
        "d",
        "d AND d_ok",
        "d AND (h OR late)",
        "h",
        "h AND h_ok",
        "h AND rw",
        "f AND NOT v AND (cl OR late)",
        "cl",
        "cl AND cl_ok",
    ];
    debug_assert_eq!(counts.len(), Counts::LEN);
    let case_key = if by == By::Dept { "c.dept_code" } else { "c.grid_code" };
    let facts: Vec<String> = facts
        .iter()
        .map(|(name, expr)| match dialect {
            Dialect::Postgres => format!("{expr} AS {name}"),
            Dialect::Sqlite => format!("{} AS {name}", expr.replace("c.", "+c.")),
        })
        .collect();
    let columns: Vec<String> =
        counts.iter().enumerate().map(|(i, f)| format!("count(*) FILTER (WHERE {f}) AS n{i}")).collect();
    let per_case = format!(
        "SELECT {case_key} AS unit, {} FROM cases c \
         WHERE c.reported_at >= $1 AND c.reported_at < $2 AND {case_key} IS NOT NULL",
        facts.join(", ")
    );
    let counted = format!("SELECT unit, {} FROM ({per_case}) t GROUP BY unit", columns.join(", "));
    let Some((key, joins)) = by.region_joins() else { return counted };
    let sums: Vec<String> = (0..Counts::LEN).map(|i| format!("CAST(sum(n{i}) AS bigint)")).collect();
    format!("SELECT {key} AS unit, {} FROM ({counted}) t{joins} GROUP BY {key}", sums.join(", "))
}

/// The instants an evaluation period spans: reports from `start` (inclusive) to `end`
/// (exclusive), counted as of `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
}

impl Period {
    /// The period cut into `n` consecutive parts of about equal length, counted as of the same
    /// instant: each report falls in exactly one, so the parts' counts add up to the period's.
    pub fn split(self, n: u32) -> Vec<Period> {
        let n = n.max(1);
        let step = (self.end - self.start) / n as i32;
        (0..n)
            .map(|i| Period {
                start: self.start + step * i as i32,
                end: if i + 1 == n { self.end } else { self.start + step * (i as i32 + 1) },
                as_of: self.as_of,
            })
            .collect()
    }
}

/// The counts of parts of a period added up per unit, in unit order.
pub fn merge(parts: impl IntoIterator<Item = Vec<(String, Counts)>>) -> Vec<(String, Counts)> {
    let mut units: std::collections::BTreeMap<String, Counts> = std::collections::BTreeMap::new();
    for (unit, counts) in parts.into_iter().flatten() {
        *units.entry(unit).or_default() += counts;
    }
    units.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_split_period_covers_each_instant_once_and_its_counts_add_up() {
        let at = |d: u32| Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap();
        let p = Period { start: at(1), end: at(30), as_of: at(31) };
        let parts = p.split(3);
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0].start, parts[2].end), (p.start, p.end));
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start && w[0].start < w[0].end));
        assert!(parts.iter().all(|q| q.as_of == p.as_of));
        let c = |n: i64| Counts { reports: n, closed: 2 * n, ..Default::default() };
        let merged = merge([vec![("b".into(), c(1)), ("a".into(), c(2))], vec![("b".into(), c(3))]]);
        assert_eq!(merged, [("a".to_string(), c(2)), ("b".to_string(), c(4))]);
    }
}
