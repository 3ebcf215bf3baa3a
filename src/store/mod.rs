//! The durable system of record: the `Store` trait and its two backends, PostGIS (production)
//! and an embedded GeoPackage file (the default). Nothing is acknowledged to a client before a
//! store has committed it; the live index is rebuilt from here at start-up.
//!
//! The tables are described once, in [`schema`], as column lists with a value mapping per model
//! type; each backend only knows how to bind and read those values in its own dialect. That keeps
//! the two stores from drifting apart column by column.

pub(crate) mod alarms;
pub(crate) mod cluster;
pub mod evaluation;
pub mod gpkg;
pub mod log;
pub mod postgis;
pub(crate) mod queue;
pub mod schema;
pub(crate) mod tracks;

use std::sync::Arc;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use evaluation::{By, Counts, Period};

use crate::model::{Alarm, Case, CaseStep, City, PatrolDay, PatrolVisit, Position, Reading, ReadingBucket};
use log::{ChangeRow, Logged};
use schema::{Filter, Row, Table, Val};

/// What can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bad geometry in {table}: {detail}")]
    Geometry { table: &'static str, detail: String },
    #[error("bad value in {table}.{column}: {detail}")]
    Value { table: &'static str, column: &'static str, detail: String },
    #[error("unsupported store location {0:?}: use a path ending in .gpkg or a postgres:// URL")]
    Location(String),
    #[error("GeoPackage read error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store is closed")]
    Closed,
    #[error("writing a batch of workflow steps failed: {detail}")]
    Batch { detail: String, unavailable: bool },
}

impl StoreError {
    /// Whether the store could not be reached (a restart, a failover, a lost connection, no
    /// free connection in time) rather than refusing the request: the client may retry, and
    /// nothing was acknowledged.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
                sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
                // Class 08 (connection exception), 57P01-57P03 (shutting down, starting up),
                // 25006 (a read-only transaction: a standby not yet promoted).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "25006")),
                _ => false,
            },
            StoreError::Closed => true,
            StoreError::Batch { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}

/// What [`Store::save_alarm`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmSaved {
    /// Stored and logged: the alarm's id and the change's sequence number.
    Saved { id: i64, seq: i64 },
    /// Not stored: the sensor already has this active alarm.
    Active(Alarm),
}

/// Progress callback for long writes and loads: (table, rows done so far).
pub type Progress<'a> = &'a (dyn Fn(&str, usize) + Send + Sync);

/// The one interface the rest of onemap uses for persistence.
#[async_trait]
pub trait Store: Send + Sync {
    /// `gpkg` or `postgis`, as reported by `/health`.
    fn kind(&self) -> &'static str;

    /// True when the store holds no unit grid yet (a new store that `--demo` may seed).
    async fn is_empty(&self) -> Result<bool, StoreError>;

    /// Writes a whole city in one transaction: all of it or nothing.
    async fn write_city(&self, city: &City, progress: Progress<'_>) -> Result<(), StoreError>;

    /// Loads every table, for building the live index at start-up.
    async fn load_city(&self, progress: Progress<'_>) -> Result<City, StoreError>;

    /// Which unit grid contains each point, answered by the database itself (PostGIS: an
    /// `ST_Intersects` join over the GiST index). Used to measure the in-memory index against the
    /// database, and as a cross-check in tests. `None` when the backend cannot answer spatially.
    async fn locate_in_db(&self, points: &[(f64, f64)]) -> Result<Option<Vec<Option<String>>>, StoreError>;

    /// The rows of `table` that `filter` picks, in the table's natural order. See [`find`] for
    /// the typed form.
    async fn select(&self, table: &'static Table, filter: Filter) -> Result<Vec<Vec<Val>>, StoreError>;

    /// The key (first column) of every row of `table`, as text: what an import checks its
    /// codes against without loading ten million geometries.
    async fn keys(&self, table: &'static Table) -> Result<Vec<String>, StoreError>;

    /// Writes imported rows of `table` (cases get new ids and an `import` first step), a record
    /// of the import and its change (op `import`, with the rows' extent), all in one transaction:
    /// all of it or nothing. Returns the change's sequence number.
    async fn import(
        &self,
        table: &'static Table,
        rows: Vec<Vec<Val>>,
        source: &str,
        progress: Progress<'_>,
    ) -> Result<i64, StoreError>;

    /// Inserts rows into `table` and logs `changes`, in one transaction; returns the changes'
    /// sequence numbers. See [`insert`] for the typed form.
    async fn insert_rows(
        &self,
        table: &'static Table,
        rows: Vec<Vec<Val>>,
        changes: Vec<ChangeRow>,
    ) -> Result<Vec<i64>, StoreError>;

    /// Replaces the row of `table` whose `key` column holds the given value, if its `guard`
    /// column still holds the given one (optimistic concurrency; geometry is left alone), and
    /// logs `changes`, in one transaction. `None`, with nothing written, when another writer got
    /// there first; else the changes' sequence numbers.
    async fn update_row(
        &self,
        table: &'static Table,
        row: Vec<Val>,
        key: (&'static str, Val),
        guard: (&'static str, Val),
        changes: Vec<ChangeRow>,
    ) -> Result<Option<Vec<i64>>, StoreError>;

    /// Stores a new case, the first step of its history and its change in one transaction. The
    /// store assigns the id (whatever `case.id` and `first.case_id` hold), names the change after
    /// it ([`ChangeRow::with_id`]) and returns (id, sequence number).
    async fn create_case(&self, case: &Case, first: &CaseStep, change: ChangeRow) -> Result<(i64, i64), StoreError>;

    /// Applies one workflow step: the case (with its new status and version) replaces the stored
    /// one if that is still at `expected_version`, the step joins the history and the change is
    /// logged, in one transaction. `None`, with nothing written, when another change got there
    /// first; else the change's sequence number.
    async fn update_case(
        &self,
        case: &Case,
        expected_version: i32,
        step: &CaseStep,
        change: ChangeRow,
    ) -> Result<Option<i64>, StoreError>;

    /// Logs changes that no table row carries (a light sweep, sensors going quiet).
    async fn append_changes(&self, changes: Vec<ChangeRow>) -> Result<Vec<i64>, StoreError>;

    /// Up to `limit` changes after `seq`, in order.
    async fn changes_after(&self, seq: i64, limit: i64) -> Result<Vec<Logged>, StoreError>;

    /// The oldest retained and the newest sequence number (0, 0 for an empty log).
    async fn log_bounds(&self) -> Result<(i64, i64), StoreError>;

    /// Forgets changes committed before `before` (never the newest); returns how many.
    async fn prune_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The evaluation counts per unit of the cases reported in the period, counted as of its
    /// as-of instant (see [`crate::cases::evaluation`]): one SQL scan in the database.
    async fn evaluation_counts(&self, by: By, period: Period) -> Result<Vec<(String, Counts)>, StoreError>;

    /// Stores readings, skipping any already stored for the same sensor and time (a resent
    /// batch, a device repeating itself), and logs one change naming each sensor's latest new
    /// reading ([`log::readings_change`]). True for each reading that was new, and the change's
    /// sequence number when anything was; `readings` holds no two with the same sensor and time.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<(Vec<bool>, Option<i64>), StoreError>;

    /// How many readings `sensor` has in `[from, to)`.
    async fn count_readings(&self, sensor: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, StoreError>;

    /// `sensor`'s readings in `[from, to)` in time order: each one, or with `bucket_s` one row
    /// per bucket of that many seconds (aligned to the epoch) with the mean, minimum, maximum and
    /// count, at the bucket's start.
    async fn readings(
        &self,
        sensor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_s: Option<i64>,
    ) -> Result<Vec<ReadingBucket>, StoreError>;

    /// The latest reading of every sensor that has one (to restore the live state at start-up).
    async fn latest_readings(&self) -> Result<Vec<Reading>, StoreError>;

    /// Inserts `alarm` when its id is 0, otherwise updates it, and logs `change` (named after a
    /// new alarm's id). A sensor has at most one active alarm, whichever process raised it: a
    /// new one meeting it is not stored, and the active one comes back instead.
    async fn save_alarm(&self, alarm: &Alarm, change: ChangeRow) -> Result<AlarmSaved, StoreError>;

    /// Alarms, the latest raised first, at most `limit`: only those not cleared when `active`.
    async fn alarms(&self, active: bool, limit: i64) -> Result<Vec<Alarm>, StoreError>;

    /// Stores a batch of staff positions (repeats of a stored member and time skipped), adds
    /// `days` and `visits` to the patrol tallies, and logs `change` (an [`log::Op::Positions`]
    /// change), in one transaction; returns the change's sequence number.
    async fn insert_positions(
        &self,
        positions: &[Position],
        days: &[PatrolDay],
        visits: &[PatrolVisit],
        change: ChangeRow,
    ) -> Result<i64, StoreError>;

    /// The latest position of every member that has one (where they were last seen, at start-up).
    async fn latest_positions(&self) -> Result<Vec<Position>, StoreError>;

    /// `staff`'s positions in `[from, to)` in time order, at most `limit`.
    async fn track(
        &self,
        staff: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Position>, StoreError>;

    /// The patrol tallies of one city day.
    async fn patrol(&self, day: chrono::NaiveDate) -> Result<(Vec<PatrolDay>, Vec<PatrolVisit>), StoreError>;

    /// The highest sequence number other commits announced, a hint that wakes a follower at
    /// once (PostgreSQL's `NOTIFY`); None where nothing announces (the GeoPackage file, which
    /// followers poll).
    fn announcements(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        None
    }

    /// Whether this process holds the singleton lease, and so runs the periodic jobs (light
    /// and stale sweeps, simulators, pruning): on PostgreSQL one process of all that share the
    /// database; the GeoPackage file has only one writer, which always holds it.
    fn leadership(&self) -> tokio::sync::watch::Receiver<bool>;

    /// Checks the store answers (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Waits for in-flight work and closes the connections.
    async fn close(&self);
}

/// Opens (creating and migrating where needed) the store at `location`: a `.gpkg` path or a
/// `postgres://` / `postgresql://` URL.
pub async fn open(location: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(location, false).await
}

/// Opens the store at `location`, `read_only` for a process that only serves reads and follows
/// the log (`serve --read-only`): it migrates nothing and never holds the singleton lease.
pub async fn open_with(location: &str, read_only: bool) -> Result<Arc<dyn Store>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Ok(Arc::new(postgis::PostgisStore::open_with(location, read_only).await?))
    } else if location.ends_with(".gpkg") {
        Ok(Arc::new(gpkg::GpkgStore::open_with(location, read_only).await?))
    } else {
        Err(StoreError::Location(location.to_string()))
    }
}

/// Rows per batch when writing `table`: up to 2,000 to amortise round trips, fewer for wide
/// tables so a batch stays under SQLite's bound-parameter limit (32,766).
pub(crate) fn batch_rows(table: &Table) -> usize {
    (32_000 / table.cols.len()).min(2_000)
}

/// The records of type `T` whose column `col` equals `value`.
pub async fn find<T: Row>(store: &dyn Store, col: &'static str, value: Val) -> Result<Vec<T>, StoreError> {
    select(store, Filter::Eq(col, value)).await
}

/// The records of type `T` that `filter` picks.
pub async fn select<T: Row>(store: &dyn Store, filter: Filter) -> Result<Vec<T>, StoreError> {
    store.select(T::table(), filter).await?.into_iter().map(T::from_row).collect()
}

/// Inserts records of type `T` and logs `changes` in one transaction.
pub async fn insert<T: Row>(store: &dyn Store, items: &[T], changes: Vec<ChangeRow>) -> Result<Vec<i64>, StoreError> {
    store.insert_rows(T::table(), items.iter().map(Row::to_row).collect(), changes).await
}

/// Whether `e` is a unique-key violation: a row another writer (or process) stored first.
pub fn is_duplicate(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
}

/// Reads one row of [`evaluation::counts_sql`]: the unit, then the counts.
pub(crate) fn counts_row<R: sqlx::Row>(row: &R) -> Result<(String, Counts), StoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let counts: Vec<i64> = (1..=Counts::LEN).map(|i| row.try_get(i)).collect::<Result<_, _>>()?;
    Ok((row.try_get(0)?, Counts::from_slice(&counts)))
}

/// The body of both stores' `import` inside their open transaction `$tx`: record the import,
/// allocate case ids with `$ids` (an expression of the row count `$n`), write the rows through
/// `$io` and prune old keys; evaluates to the import's number and its change row. A macro for
/// the same reason as [`save_alarm_body`]: the two connections are different types.
macro_rules! import_body {
    ($tx:ident, $table:expr, $rows:expr, $source:expr, $progress:expr, |$n:ident| $ids:expr, $io:expr) => {{
        let (table, rows, source) = ($table, $rows, $source);
        let extent = crate::store::schema::rows_bbox(&rows);
        let features = rows.len();
        let seq: i64 = sqlx::query_scalar(crate::store::schema::IMPORT_SQL)
            .bind(table.name)
            .bind(rows.len() as i64)
            .bind(source)
            .fetch_one(&mut *$tx)
            .await?;
        let $n = rows.len() as i64;
        let ids: Vec<i64> = if table.name == crate::store::schema::CASES.name { $ids } else { Vec::new() };
        crate::store::schema::write_import(&mut $io, table, rows, seq, &ids, source, $progress).await?;
        sqlx::query(crate::store::schema::PRUNE_IMPORT_KEYS_SQL)
            .bind(seq - crate::store::schema::IMPORTS_KEPT)
            .execute(&mut *$tx)
            .await?;
        let collection = crate::model::Collection::parse(table.name)
            .ok_or_else(|| StoreError::Value { table: table.name, column: "collection", detail: "not a collection".into() })?;
        let change = crate::store::log::ChangeRow {
            collection,
            key: Some(seq.to_string()),
            op: crate::store::log::Op::Import,
            event: None,
            data: Some(serde_json::json!({"features": features, "source": source})),
            bbox: extent.into_iter().collect(),
        };
        (seq, change)
    }};
}
pub(crate) use import_body;
