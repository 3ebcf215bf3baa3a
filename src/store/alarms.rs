//! The alarm statements both stores run (`alarms`: insert or update, list), written once.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{Alarm, Level};

/// The body of both stores' `save_alarm`, which differ only in how a time is bound (`$time`: a
/// time to the value bound) and in taking turns to write (`$turn`). A macro rather than a generic
/// function: the sqlx bounds for "any database that encodes these types" would dwarf the body.
macro_rules! save_alarm_body {
    ($exec:expr, $a:expr, $time:expr) => {{
        let (a, t) = ($a, $time);
        let mut q = sqlx::query_scalar(crate::store::alarms::alarm_sql(a.id == 0))
            .bind(a.sensor_code.as_str())
            .bind(a.level.as_str())
            .bind(a.peak_level.as_str())
            .bind(t(a.raised_at))
            .bind(a.value)
            .bind(t(a.updated_at))
            .bind(a.last_value)
            .bind(a.cleared_at.map(t))
            .bind(a.acked_at.map(t))
            .bind(a.acked_by.as_deref())
            .bind(a.case_id);
        if a.id != 0 {
            q = q.bind(a.id);
        }
        let id: Option<i64> = q.fetch_optional($exec).await?;
        match id {
            None if a.id != 0 => {
                return Err(StoreError::Value { table: "alarms", column: "id", detail: format!("no alarm {}", a.id) });
            }
            id => id,
        }
    }};
}
pub(crate) use save_alarm_body;

/// Both stores' `save_alarm` around [`save_alarm_body`]: a new alarm that meets the sensor's
/// active one (raised meanwhile by another replica's rules) is not stored and that one is
/// returned instead; otherwise the change is logged and the transaction committed.
macro_rules! save_alarm_tx {
    ($tx:expr, $db:ty, $pg:expr, $a:expr, $change:expr, $time:expr, $ty:ty, $read:expr) => {{
        let a: &crate::model::Alarm = $a;
        match crate::store::alarms::save_alarm_body!(&mut *$tx, a, $time) {
            Some(id) => {
                let seqs = crate::store::log::append!($tx, $db, &[$change.with_id(id)], $pg);
                $tx.commit().await?;
                Ok(crate::store::AlarmSaved::Saved { id, seq: seqs[0] })
            }
            None => {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM alarms WHERE sensor_code = $1 AND cleared_at IS NULL",
                    crate::store::alarms::ALARM_COLUMNS
                ))
                .bind(a.sensor_code.as_str())
                .fetch_one(&mut *$tx)
                .await?;
                Ok(crate::store::AlarmSaved::Active(crate::store::alarms::alarm_row(&row, |t: $ty| $read(t))?))
            }
        }
    }};
}
pub(crate) use save_alarm_tx;

/// The body of both stores' `alarms`; `$read` turns a stored time column (of type `$ty`) back
/// into a time.
macro_rules! alarms_body {
    ($exec:expr, $active:expr, $limit:expr, $ty:ty, $read:expr) => {{
        let filter = if $active { "WHERE cleared_at IS NULL" } else { "" };
        let rows = sqlx::query(&format!(
            "SELECT {} FROM alarms {filter} ORDER BY raised_at DESC, id DESC LIMIT $1",
            crate::store::alarms::ALARM_COLUMNS
        ))
        .bind($limit)
        .fetch_all($exec)
        .await?;
        rows.iter().map(|r| crate::store::alarms::alarm_row(r, |t: $ty| $read(t))).collect()
    }};
}
pub(crate) use alarms_body;

/// The alarm columns in the order both stores select them.
pub(crate) const ALARM_COLUMNS: &str = "id, sensor_code, level, peak_level, raised_at, value, updated_at, last_value, \
     cleared_at, acked_at, acked_by, case_id";

/// The statement that inserts an alarm (the store gives the id) or, with `$12` = id, updates
/// one; the same text in both dialects.
pub(crate) fn alarm_sql(insert: bool) -> &'static str {
    if insert {
        "INSERT INTO alarms (sensor_code, level, peak_level, raised_at, value, updated_at, last_value, \
         cleared_at, acked_at, acked_by, case_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (sensor_code) WHERE cleared_at IS NULL DO NOTHING RETURNING id"
    } else {
        "UPDATE alarms SET sensor_code = $1, level = $2, peak_level = $3, raised_at = $4, value = $5, \
         updated_at = $6, last_value = $7, cleared_at = $8, acked_at = $9, acked_by = $10, case_id = $11 \
         WHERE id = $12 RETURNING id"
    }
}

/// A stored level name back to the level.
pub(crate) fn parse_level(s: &str) -> Result<Level, StoreError> {
    Level::parse(s).ok_or_else(|| StoreError::Value { table: "alarms", column: "level", detail: format!("{s:?}") })
}

/// Reads one row of [`ALARM_COLUMNS`] whose times decode as `T` (timestamps or text), turned
/// into UTC by `time`.
pub(crate) fn alarm_row<R: sqlx::Row, T>(
    row: &R,
    time: impl Fn(T) -> Result<DateTime<Utc>, StoreError>,
) -> Result<Alarm, StoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let opt_time = |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get::<Option<T>, _>(i)?.map(&time).transpose()
    };
    Ok(Alarm {
        id: row.try_get(0)?,
        sensor_code: row.try_get::<String, _>(1)?.into(),
        level: parse_level(&row.try_get::<String, _>(2)?)?,
        peak_level: parse_level(&row.try_get::<String, _>(3)?)?,
        raised_at: time(row.try_get(4)?)?,
        value: row.try_get(5)?,
        updated_at: time(row.try_get(6)?)?,
        last_value: row.try_get(7)?,
        cleared_at: opt_time(8)?,
        acked_at: opt_time(9)?,
        acked_by: row.try_get::<Option<String>, _>(10)?.map(Into::into),
        case_id: row.try_get(11)?,
    })
}
