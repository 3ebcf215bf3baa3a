//! The staff tracks and patrol tallies both stores write (`staff_positions`,
//! `patrol_days`, `patrol_visits`), written once. Macros rather than generic functions for the
//! reason `alarms.rs` gives: the two stores' connections and time types differ.

/// Positions a statement: five parameters each, under SQLite's 32,766.
pub(crate) const POSITIONS_PER_STATEMENT: usize = 6_000;
/// Tally rows a statement (seven parameters each).
pub(crate) const TALLIES_PER_STATEMENT: usize = 4_000;

/// The upsert that adds a batch's tallies to a day's (`$least`/`$greatest`: the dialect's
/// two-argument minimum and maximum).
pub(crate) fn days_conflict(least: &str, greatest: &str) -> String {
    format!(
        " ON CONFLICT (day, staff_code) DO UPDATE SET positions = patrol_days.positions + excluded.positions, \
         distance_m = patrol_days.distance_m + excluded.distance_m, duty_s = patrol_days.duty_s + excluded.duty_s, \
         first_ms = {least}(patrol_days.first_ms, excluded.first_ms), \
         last_ms = {greatest}(patrol_days.last_ms, excluded.last_ms)"
    )
}

pub(crate) fn visits_conflict(least: &str, greatest: &str) -> String {
    format!(
        " ON CONFLICT (day, staff_code, grid_code) DO UPDATE SET \
         positions = patrol_visits.positions + excluded.positions, \
         first_ms = {least}(patrol_visits.first_ms, excluded.first_ms), \
         last_ms = {greatest}(patrol_visits.last_ms, excluded.last_ms)"
    )
}

/// The body of both stores' `insert_positions` inside their open transaction `$tx`: the
/// positions (`$at_col` named and bound through `$at`, repeats skipped), the tallies added to,
/// and the change logged; evaluates to the change's sequence number.
macro_rules! insert_positions_tx {
    ($tx:expr, $db:ty, $pg:expr, $at_col:literal, $at:expr, $least:literal, $greatest:literal,
     $positions:expr, $days:expr, $visits:expr, $change:expr) => {{
        use crate::store::tracks::*;
        let at = $at;
        for chunk in $positions.chunks(POSITIONS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(concat!(
                "INSERT INTO staff_positions (staff_code, ",
                $at_col,
                ", lon, lat, grid_code) "
            ));
            qb.push_values(chunk, |mut b, p: &crate::model::Position| {
                b.push_bind(p.staff.as_str()).push_bind(at(p.at)).push_bind(p.lon).push_bind(p.lat);
                b.push_bind(p.grid_code.as_deref());
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build().execute(&mut *$tx).await?;
        }
        for chunk in $days.chunks(TALLIES_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO patrol_days (day, staff_code, positions, distance_m, duty_s, first_ms, last_ms) ",
            );
            qb.push_values(chunk, |mut b, d: &crate::model::PatrolDay| {
                b.push_bind(d.day).push_bind(d.staff.as_str()).push_bind(d.positions);
                b.push_bind(d.distance_m).push_bind(d.duty_s).push_bind(d.first_ms).push_bind(d.last_ms);
            });
            qb.push(days_conflict($least, $greatest));
            qb.build().execute(&mut *$tx).await?;
        }
        for chunk in $visits.chunks(TALLIES_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO patrol_visits (day, staff_code, grid_code, positions, first_ms, last_ms) ",
            );
            qb.push_values(chunk, |mut b, v: &crate::model::PatrolVisit| {
                b.push_bind(v.day).push_bind(v.staff.as_str()).push_bind(v.grid.as_str());
                b.push_bind(v.positions).push_bind(v.first_ms).push_bind(v.last_ms);
            });
            qb.push(visits_conflict($least, $greatest));
            qb.build().execute(&mut *$tx).await?;
        }
        let seqs = crate::store::log::append!($tx, $db, std::slice::from_ref(&$change), $pg);
        seqs[0]
    }};
}
pub(crate) use insert_positions_tx;
