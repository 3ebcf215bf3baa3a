//! The embedded store: one OGC GeoPackage file (SQLite through sqlx), so onemap runs with nothing
//! installed and the store itself opens in QGIS and `ogrinfo`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use geo::{BoundingRect, Geometry};
use geozero::{CoordDimensions, ToGeo, ToWkb};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::evaluation::{By, Counts, Dialect, Period, counts_sql, merge};
use super::log::{self, ChangeRow, Logged};
use super::queue::{CaseWrites, NewCase, StepWrite};
use super::schema::{self, ColType, Filter, RowReader, RowSink, RowWriter, Table, Val, unsupported_filter};
use super::{AlarmSaved, Progress, Store, StoreError};
use crate::model::{Alarm, Case, CaseStep, City, PatrolDay, PatrolVisit, Position, Reading, ReadingBucket};
use schema::Row as _;

/// Timestamps as GeoPackage DATETIME text (RFC 3339, UTC, milliseconds).
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// SRS id of CGCS2000 in `gpkg_spatial_ref_sys`.
const SRS_ID: i32 = 4490;
/// The most parts an evaluation's period is counted in at once, each on a core of its own.
const EVALUATION_PARTS: usize = 3;

pub struct GpkgStore {
    pool: SqlitePool,
    path: String,
    /// One writer at a time within this process. SQLite allows a single writer anyway; taking
    /// turns here, rather than in SQLite's busy handler, also makes "read the next case id, then
    /// insert" safe, since a deferred transaction that read before another committed could not
    /// upgrade to a write.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Workflow steps and new cases, written in group-committed batches (one fsync per batch).
    writes: CaseWrites,
    /// The writer holds the singleton lease for good; a read-only process never does.
    leader: tokio::sync::watch::Sender<bool>,
    /// The connection staff positions are written through (rusqlite, opened on first use): a
    /// batch is three rows a position, and prepared statements executed row by row cost a
    /// fraction of sqlx's per-parameter round trips to its worker thread.
    tracks: std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
}

impl GpkgStore {
    /// Opens the file, creating it and its parent folder when missing, and applies migrations.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        Self::open_with(path, false).await
    }

    /// Opens the file `read_only` for a second process beside its writer (`serve --read-only`):
    /// no migration, no checkpoint, and any write fails in SQLite itself.
    pub async fn open_with(path: &str, read_only: bool) -> Result<Self, StoreError> {
        if let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(!read_only)
            .read_only(read_only)
            // WAL keeps readers off the writer's back; FULL sync makes every acknowledged commit
            // survive a power cut, not just a killed process.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(false)
            .busy_timeout(std::time::Duration::from_secs(30))
            // 64 MiB of page cache per connection instead of SQLite's 2 MiB: sensor readings
            // land all over their (sensor, time) key, and the default let a few million rows
            // push the insert path out to disk.
            .pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        if !read_only {
            sqlx::migrate!("migrations/gpkg").run(&pool).await?;
        }
        let writer = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let (batch_pool, batch_writer) = (pool.clone(), writer.clone());
        let (cases_pool, cases_writer) = (pool.clone(), writer.clone());
        let writes = CaseWrites::start(
            move |batch: Vec<StepWrite>| {
                let (pool, writer) = (batch_pool.clone(), batch_writer.clone());
                async move { write_steps(&pool, &writer, batch).await }
            },
            move |batch: Vec<NewCase>| {
                let (pool, writer) = (cases_pool.clone(), cases_writer.clone());
                async move { write_cases(&pool, &writer, batch).await }
            },
        );
        let leader = tokio::sync::watch::channel(!read_only).0;
        let store = GpkgStore { pool, path: path.to_string(), writer, writes, leader, tracks: Default::default() };
        if !read_only {
            store.checkpoint().await?;
        }
        Ok(store)
    }

    /// Copies the WAL into the main file. GDAL checks the GeoPackage `application_id` by reading
    /// the file header directly, which in WAL mode only changes at a checkpoint.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Store for GpkgStore {
    fn kind(&self) -> &'static str {
        "gpkg"
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM grids").fetch_one(&self.pool).await?;
        Ok(n == 0)
    }

    async fn write_city(&self, city: &City, progress: Progress<'_>) -> Result<(), StoreError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut io = GpkgIo { conn: &mut tx };
        schema::write_city_rows(&mut io, city, progress).await?;
        // Keep gpkg_contents' extents honest so QGIS zooms to the city on open.
        if let Some(r) = city_bounds(city) {
            sqlx::query(
                "UPDATE gpkg_contents SET min_x = $1, min_y = $2, max_x = $3, max_y = $4, \
                 last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE data_type = 'features'",
            )
            .bind(r.min().x)
            .bind(r.min().y)
            .bind(r.max().x)
            .bind(r.max().y)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.checkpoint().await
    }

    async fn load_city(&self, progress: Progress<'_>) -> Result<City, StoreError> {
        let mut reader = GpkgReader { path: self.path.clone() };
        schema::load_city_rows(&mut reader, progress).await
    }

    async fn locate_in_db(&self, _points: &[(f64, f64)]) -> Result<Option<Vec<Option<String>>>, StoreError> {
        // Plain SQLite has no spatial functions; the in-memory index is the only spatial engine.
        Ok(None)
    }

    async fn select(&self, table: &'static Table, filter: Filter) -> Result<Vec<Vec<Val>>, StoreError> {
        let mut out = Vec::new();
        GpkgReader { path: self.path.clone() }
            .select_each(table, filter, &mut |row| {
                let _: () = out.push(row);
                Ok(())
            })
            .await?;
        Ok(out)
    }

    async fn keys(&self, table: &'static Table) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(&schema::keys_sql(table)).fetch_all(&self.pool).await?)
    }

    async fn import(
        &self,
        table: &'static Table,
        rows: Vec<Vec<Val>>,
        source: &str,
        progress: Progress<'_>,
    ) -> Result<i64, StoreError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let (_, change) = super::import_body!(
            tx,
            table,
            rows,
            source,
            progress,
            |n| {
                let first = next_case_id(&mut tx).await?;
                (first..first + n).collect()
            },
            GpkgIo { conn: &mut tx }
        );
        let seqs = log::append!(tx, Sqlite, &[change], false);
        tx.commit().await?;
        self.checkpoint().await?;
        Ok(seqs[0])
    }

    async fn insert_rows(
        &self,
        table: &'static Table,
        rows: Vec<Vec<Val>>,
        changes: Vec<ChangeRow>,
    ) -> Result<Vec<i64>, StoreError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        GpkgIo { conn: &mut tx }.insert_rows(table, &rows).await?;
        let seqs = log::append!(tx, Sqlite, &changes, false);
        tx.commit().await?;
        Ok(seqs)
    }

    async fn update_row(
        &self,
        table: &'static Table,
        row: Vec<Val>,
        key: (&'static str, Val),
        guard: (&'static str, Val),
        changes: Vec<ChangeRow>,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut qb = table
            .update::<Sqlite>(&row, (key.0, &key.1), (guard.0, &guard.1), |b, v| bind(b, v, &mut std::iter::empty()));
        if qb.build().execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(None);
        }
        let seqs = log::append!(tx, Sqlite, &changes, false);
        tx.commit().await?;
        Ok(Some(seqs))
    }

    async fn create_case(&self, case: &Case, first: &CaseStep, change: ChangeRow) -> Result<(i64, i64), StoreError> {
        self.writes.create(case, first, change).await
    }

    async fn update_case(
        &self,
        case: &Case,
        expected_version: i32,
        step: &CaseStep,
        change: ChangeRow,
    ) -> Result<Option<i64>, StoreError> {
        self.writes.step(case, expected_version, step, change).await
    }

    async fn append_changes(&self, changes: Vec<ChangeRow>) -> Result<Vec<i64>, StoreError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let seqs = log::append!(tx, Sqlite, &changes, false);
        tx.commit().await?;
        Ok(seqs)
    }

    async fn changes_after(&self, seq: i64, limit: i64) -> Result<Vec<Logged>, StoreError> {
        let rows: Vec<log::RawRow> = sqlx::query_as(log::AFTER_SQL).bind(seq).bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter().map(log::from_raw).collect()
    }

    async fn log_bounds(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(log::BOUNDS_SQL).fetch_one(&self.pool).await?)
    }

    async fn prune_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _turn = self.writer.lock().await;
        let done = sqlx::query(log::PRUNE_SQL).bind(before.timestamp_millis()).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn evaluation_counts(&self, by: By, period: Period) -> Result<Vec<(String, Counts)>, StoreError> {
        // SQLite runs a statement on one core, and sqlx hands its rows over at some 13 µs each
        // (65,000 grids' rows took longer than counting the cases): the period is counted in
        // parts, one per core, each with rusqlite on a blocking thread, and the parts added up.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(EVALUATION_PARTS);
        let sql = std::sync::Arc::new(counts_sql(by, Dialect::Sqlite));
        let parts = period.split(cores as u32).into_iter().map(|part| {
            let (path, sql) = (self.path.clone(), sql.clone());
            async move {
                tokio::task::spawn_blocking(move || read_counts(&path, &sql, part))
                    .await
                    .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
            }
        });
        Ok(merge(futures::future::try_join_all(parts).await?))
    }

    async fn insert_readings(&self, readings: &[Reading]) -> Result<(Vec<bool>, Option<i64>), StoreError> {
        // Multi-row inserts that skip stored keys, a statement per 10,000 readings (under
        // SQLite's 32,766 parameters). When every row went in, as usual, that is all; only a
        // chunk with duplicates is redone, from a savepoint, returning the keys it took, since
        // sqlx's SQLite driver hands rows over one by one at some 13 µs each.
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(readings.len());
        for chunk in readings.chunks(10_000) {
            let insert = |returning: bool| {
                let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
                    "INSERT OR IGNORE INTO sensor_readings (sensor_code, at_ms, value) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.sensor.as_str()).push_bind(r.at.timestamp_millis()).push_bind(r.value);
                });
                if returning {
                    qb.push(" RETURNING sensor_code, at_ms");
                }
                qb
            };
            sqlx::query("SAVEPOINT readings").execute(&mut *tx).await?;
            let taken = insert(false).build().execute(&mut *tx).await?.rows_affected();
            if taken as usize == chunk.len() {
                out.extend(std::iter::repeat_n(true, chunk.len()));
            } else {
                sqlx::query("ROLLBACK TO readings").execute(&mut *tx).await?;
                let keys: std::collections::HashSet<(String, i64)> =
                    insert(true).build_query_as().fetch_all(&mut *tx).await?.into_iter().collect();
                out.extend(chunk.iter().map(|r| keys.contains(&(r.sensor.to_string(), r.at.timestamp_millis()))));
            }
            sqlx::query("RELEASE readings").execute(&mut *tx).await?;
        }
        let change: Vec<ChangeRow> = log::readings_change(readings, &out).into_iter().collect();
        let seqs = log::append!(tx, Sqlite, &change, false);
        tx.commit().await?;
        Ok((out, seqs.first().copied()))
    }

    async fn count_readings(&self, sensor: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM sensor_readings WHERE sensor_code = $1 AND at_ms >= $2 AND at_ms < $3",
        )
        .bind(sensor)
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn readings(
        &self,
        sensor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_s: Option<i64>,
    ) -> Result<Vec<ReadingBucket>, StoreError> {
        // Integer division floors for the non-negative times of any real reading.
        let bucket_ms = bucket_s.map_or(1, |b| b * 1000);
        let rows: Vec<(i64, f64, f64, f64, i64)> = sqlx::query_as(
            "SELECT (at_ms / $4) * $4 AS t, avg(value), min(value), max(value), count(*) FROM sensor_readings \
             WHERE sensor_code = $1 AND at_ms >= $2 AND at_ms < $3 GROUP BY t ORDER BY t",
        )
        .bind(sensor)
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .bind(bucket_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(t, value, min, max, n)| Ok(ReadingBucket { at: from_millis(t)?, value, min, max, n }))
            .collect()
    }

    async fn latest_readings(&self) -> Result<Vec<Reading>, StoreError> {
        // SQLite takes the bare columns from the row holding the maximum.
        let rows: Vec<(String, i64, f64)> =
            sqlx::query_as("SELECT sensor_code, max(at_ms), value FROM sensor_readings GROUP BY sensor_code")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(sensor, at, value)| Ok(Reading { sensor: sensor.into(), at: from_millis(at)?, value }))
            .collect()
    }

    async fn save_alarm(&self, a: &Alarm, change: ChangeRow) -> Result<AlarmSaved, StoreError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let time = |t: DateTime<Utc>| t.format(TIME_FORMAT).to_string();
        let read = |t: String| parse_time("alarms", "time", &t);
        super::alarms::save_alarm_tx!(tx, Sqlite, false, a, change, time, String, read)
    }

    async fn alarms(&self, active: bool, limit: i64) -> Result<Vec<Alarm>, StoreError> {
        super::alarms::alarms_body!(&self.pool, active, limit, String, |t: String| parse_time("alarms", "time", &t))
    }

    async fn insert_positions(
        &self,
        positions: &[Position],
        days: &[PatrolDay],
        visits: &[PatrolVisit],
        change: ChangeRow,
    ) -> Result<i64, StoreError> {
        // In turn with every other write of this process (sqlx's connections wait for it).
        let _turn = self.writer.lock().await;
        let (path, conn) = (self.path.clone(), self.tracks.clone());
        let (positions, days, visits) = (positions.to_vec(), days.to_vec(), visits.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard = Some(open_writer(&path)?);
            }
            let conn = guard.as_mut().expect("opened above");
            let seq = write_positions(conn, &positions, &days, &visits, &change);
            if seq.is_err() {
                // A connection left in a failed state is not reused.
                *guard = None;
            }
            seq
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }

    async fn latest_positions(&self) -> Result<Vec<Position>, StoreError> {
        // SQLite takes the bare columns from the row holding the maximum.
        let rows: Vec<(String, i64, f64, f64, Option<String>)> = sqlx::query_as(
            "SELECT staff_code, max(at_ms), lon, lat, grid_code FROM staff_positions GROUP BY staff_code",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(position).collect()
    }

    async fn track(
        &self,
        staff: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Position>, StoreError> {
        let rows: Vec<(String, i64, f64, f64, Option<String>)> = sqlx::query_as(
            "SELECT staff_code, at_ms, lon, lat, grid_code FROM staff_positions \
             WHERE staff_code = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms LIMIT $4",
        )
        .bind(staff)
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(position).collect()
    }

    async fn patrol(&self, day: NaiveDate) -> Result<(Vec<PatrolDay>, Vec<PatrolVisit>), StoreError> {
        // A day of 5,000 members holds some 300,000 visits: read with rusqlite on a blocking
        // thread, as the start-up load is (see `GpkgReader`), not at sqlx's 13 µs a row.
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read_patrol(&path, day))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }

    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A stored position (time in milliseconds since 1970 UTC).
fn position((staff, at, lon, lat, grid): (String, i64, f64, f64, Option<String>)) -> Result<Position, StoreError> {
    Ok(Position { staff: staff.into(), at: from_millis(at)?, lon, lat, grid_code: grid.map(Into::into) })
}

/// The next unused case id, within the writer's transaction. AUTOINCREMENT never reuses an id;
/// sqlite_sequence remembers the highest ever used.
async fn next_case_id(tx: &mut sqlx::SqliteConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'cases'), 0), \
         COALESCE((SELECT max(id) FROM cases), 0)) + 1",
    )
    .fetch_one(&mut *tx)
    .await?)
}

/// Milliseconds since 1970 UTC as a time.
fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Value {
        table: "sensor_readings",
        column: "at_ms",
        detail: format!("{ms} is out of range"),
    })
}

/// A stored [`TIME_FORMAT`] text of `table.column` as a time.
fn parse_time(table: &'static str, column: &'static str, t: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Value {
        table,
        column,
        detail: format!("{t:?}: {e}"),
    })
}

fn city_bounds(city: &City) -> Option<geo::Rect<f64>> {
    city.districts.iter().filter_map(|d| d.geom.bounding_rect()).reduce(|a, b| {
        geo::Rect::new(
            geo::coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
            geo::coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
        )
    })
}

/// Binds one value in SQLite's dialect; geometry takes the next of `geoms` (GeoPackage binary).
fn bind<'a>(
    b: &mut sqlx::query_builder::Separated<'_, 'a, Sqlite, &'static str>,
    v: &'a Val,
    geoms: &mut impl Iterator<Item = Vec<u8>>,
) {
    if !schema::bind_plain(b, v) {
        match v {
            Val::Time(t) => b.push_bind(t.map(|t| t.format(TIME_FORMAT).to_string())),
            Val::Json(j) => b.push_bind(j.as_ref().map(|j| j.to_string())),
            _ => b.push_bind(geoms.next().expect("one encoding per geometry")),
        };
    }
}

/// Writes a batch of workflow steps in one transaction (one fsync): per step, the guarded update
/// of the case's workflow columns, then its history row only when the case was still at the
/// expected version.
async fn write_steps(
    pool: &SqlitePool,
    writer: &tokio::sync::Mutex<()>,
    batch: Vec<StepWrite>,
) -> Result<Vec<Option<i64>>, StoreError> {
    let _turn = writer.lock().await;
    let mut tx = pool.begin().await?;
    let mut applied = Vec::with_capacity(batch.len());
    for w in &batch {
        let row = schema::case_workflow_row(&w.case);
        let (id, expected) = (Val::Int(w.case.id), Val::Int(w.expected as i64));
        // Updates leave geometry alone: no encodings needed.
        let mut qb = schema::CASE_WORKFLOW
            .update::<Sqlite>(&row, ("id", &id), ("version", &expected), |b, v| bind(b, v, &mut std::iter::empty()));
        let moved = qb.build().execute(&mut *tx).await?.rows_affected() == 1;
        if moved {
            GpkgIo { conn: &mut tx }.insert_rows(&schema::CASE_STEPS, &[w.step.to_row()]).await?;
        }
        applied.push(moved);
    }
    let changes: Vec<ChangeRow> =
        batch.iter().zip(&applied).filter(|(_, moved)| **moved).map(|(w, _)| w.change.clone()).collect();
    let mut seqs = log::append!(tx, Sqlite, &changes, false).into_iter();
    tx.commit().await?;
    Ok(applied.into_iter().map(|moved| if moved { seqs.next() } else { None }).collect())
}

/// Writes a batch of new cases in one transaction: ids, rows, first steps and changes.
async fn write_cases(
    pool: &SqlitePool,
    writer: &tokio::sync::Mutex<()>,
    batch: Vec<NewCase>,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let _turn = writer.lock().await;
    let mut tx = pool.begin().await?;
    let first = next_case_id(&mut tx).await?;
    let ids: Vec<i64> = (first..first + batch.len() as i64).collect();
    let changes = schema::write_new_cases(&mut GpkgIo { conn: &mut tx }, &ids, &batch).await?;
    let seqs = log::append!(tx, Sqlite, &changes, false);
    tx.commit().await?;
    Ok(ids.into_iter().zip(seqs).collect())
}

struct GpkgIo<'c> {
    conn: &'c mut sqlx::SqliteConnection,
}

#[async_trait]
impl RowWriter for GpkgIo<'_> {
    async fn insert_rows(&mut self, table: &'static Table, rows: &[Vec<Val>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut geoms = table.encode_geoms(rows, encode_gpkg)?.into_iter();
        let mut qb = table.insert::<Sqlite>(rows, |b, v| bind(b, v, &mut geoms));
        qb.build().execute(&mut *self.conn).await?;
        Ok(())
    }
}

/// Reads tables for the start-up load with rusqlite on a blocking thread. sqlx's SQLite driver
/// costs about 13 µs a row (each row crosses a channel from its worker thread), which made a
/// ten-million-component city take minutes; a plain prepared statement scans it in seconds, and
/// decoding on the reader thread overlaps with index building on the async side.
struct GpkgReader {
    path: String,
}

/// Rows per message from the reader thread.
const READ_BATCH: usize = 4096;

#[async_trait]
impl RowReader for GpkgReader {
    async fn select_each(
        &mut self,
        table: &'static Table,
        filter: Filter,
        sink: RowSink<'_>,
    ) -> Result<(), StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Vec<Val>>, StoreError>>(4);
        let path = self.path.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let result = read_table(&path, table, filter, &tx);
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        while let Some(batch) = rx.recv().await {
            for row in batch? {
                sink(row)?;
            }
        }
        reader.await.map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        Ok(())
    }
}

/// A rusqlite connection that writes as the sqlx pool does (WAL, full sync, a busy timeout).
fn open_writer(path: &str) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}

/// One batch of positions, its tallies and its change in one transaction (see
/// `Store::insert_positions`); days are `YYYY-MM-DD` text, as sqlx writes them.
fn write_positions(
    conn: &mut rusqlite::Connection,
    positions: &[Position],
    days: &[PatrolDay],
    visits: &[PatrolVisit],
    change: &ChangeRow,
) -> Result<i64, StoreError> {
    use super::tracks::{days_conflict, visits_conflict};
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO staff_positions (staff_code, at_ms, lon, lat, grid_code) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
        )?;
        for p in positions {
            put.execute(rusqlite::params![
                p.staff.as_str(),
                p.at.timestamp_millis(),
                p.lon,
                p.lat,
                p.grid_code.as_deref()
            ])?;
        }
        let mut add = tx.prepare_cached(&format!(
            "INSERT INTO patrol_days (day, staff_code, positions, distance_m, duty_s, first_ms, last_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7){}",
            days_conflict("min", "max")
        ))?;
        for d in days {
            let day = d.day.format("%Y-%m-%d").to_string();
            add.execute(rusqlite::params![
                day,
                d.staff.as_str(),
                d.positions,
                d.distance_m,
                d.duty_s,
                d.first_ms,
                d.last_ms
            ])?;
        }
        let mut visit = tx.prepare_cached(&format!(
            "INSERT INTO patrol_visits (day, staff_code, grid_code, positions, first_ms, last_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6){}",
            visits_conflict("min", "max")
        ))?;
        for v in visits {
            let day = v.day.format("%Y-%m-%d").to_string();
            visit.execute(rusqlite::params![
                day,
                v.staff.as_str(),
                v.grid.as_str(),
                v.positions,
                v.first_ms,
                v.last_ms
            ])?;
        }
    }
    let raw = super::log::to_raw(change);
    let sql = format!("{} VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7){}", super::log::INSERT_SQL, super::log::INSERT_TAIL);
    let at = chrono::Utc::now().timestamp_millis();
    let seq: i64 =
        tx.query_row(&sql, rusqlite::params![at, raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]], |r| r.get(0))?;
    tx.commit()?;
    Ok(seq)
}

/// A read-only rusqlite connection, for reads of many rows on a blocking thread.
fn open_reader(path: &str) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    Ok(rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?)
}

/// The evaluation counts of one part of a period (see `Store::evaluation_counts`).
fn read_counts(path: &str, sql: &str, part: Period) -> Result<Vec<(String, Counts)>, StoreError> {
    let conn = open_reader(path)?;
    // Times are fixed-width UTC text here, so text comparison is time order.
    let t = |t: DateTime<Utc>| t.format(TIME_FORMAT).to_string();
    let (start, end, as_of) = (t(part.start), t(part.end), t(part.as_of));
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(rusqlite::named_params! {"$1": start, "$2": end, "$3": as_of}, |r| {
        let mut counts = [0i64; Counts::LEN];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = r.get(i + 1)?;
        }
        Ok((r.get::<_, String>(0)?, Counts::from_slice(&counts)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The patrol tallies of `day` (stored by sqlx as `YYYY-MM-DD` text).
fn read_patrol(path: &str, day: NaiveDate) -> Result<(Vec<PatrolDay>, Vec<PatrolVisit>), StoreError> {
    let conn = open_reader(path)?;
    let d = day.format("%Y-%m-%d").to_string();
    let mut stmt = conn.prepare(
        "SELECT staff_code, positions, distance_m, duty_s, first_ms, last_ms FROM patrol_days WHERE day = ?1",
    )?;
    let days = stmt
        .query_map([&d], |r| {
            Ok(PatrolDay {
                day,
                staff: r.get_ref(0)?.as_str()?.into(),
                positions: r.get(1)?,
                distance_m: r.get(2)?,
                duty_s: r.get(3)?,
                first_ms: r.get(4)?,
                last_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt =
        conn.prepare("SELECT staff_code, grid_code, positions, first_ms, last_ms FROM patrol_visits WHERE day = ?1")?;
    let visits = stmt
        .query_map([&d], |r| {
            Ok(PatrolVisit {
                day,
                staff: r.get_ref(0)?.as_str()?.into(),
                grid: r.get_ref(1)?.as_str()?.into(),
                positions: r.get(2)?,
                first_ms: r.get(3)?,
                last_ms: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((days, visits))
}

fn read_table(
    path: &str,
    table: &'static Table,
    filter: Filter,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<Vec<Val>>, StoreError>>,
) -> Result<(), StoreError> {
    let conn = open_reader(path)?;
    // Every GeoPackage table has an integer primary key, so rowid order is a sequential scan;
    // ordering by code would fetch ten million rows through the code index.
    let mut stmt = conn.prepare(&table.select(&filter, "rowid", |name, _| name.to_string()))?;
    let mut rows = match filter {
        Filter::All => stmt.query([])?,
        Filter::Eq(_, Val::Int(v)) | Filter::Imported(v) => stmt.query([v])?,
        Filter::Eq(_, Val::Text(v)) => stmt.query([v.as_deref()])?,
        Filter::Eq(col, _) => return Err(unsupported_filter(table, col)),
    };
    let mut batch = Vec::with_capacity(READ_BATCH);
    while let Some(row) = rows.next()? {
        batch.push(read_row(table, row)?);
        if batch.len() == READ_BATCH
            && tx.blocking_send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH)))).is_err()
        {
            // The receiver stopped (it failed on a row): nothing more to do.
            return Ok(());
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}

fn read_row(table: &'static Table, row: &rusqlite::Row<'_>) -> Result<Vec<Val>, StoreError> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(table.cols.len());
    for (i, &(col, ty)) in table.cols.iter().enumerate() {
        let bad = |detail: String| StoreError::Value { table: table.name, column: col, detail };
        let v = row.get_ref(i)?;
        let text = || -> Result<Option<&str>, StoreError> {
            match v {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) => std::str::from_utf8(t).map(Some).map_err(|e| bad(e.to_string())),
                other => Err(bad(format!("expected text, found {:?}", other.data_type()))),
            }
        };
        out.push(match ty {
            ColType::Text => Val::Text(text()?.map(Into::into)),
            ColType::Real => Val::Real(match v {
                ValueRef::Real(x) => x,
                ValueRef::Integer(x) => x as f64,
                // SQLite stores a NaN (an optional number left out) as NULL.
                ValueRef::Null => f64::NAN,
                other => return Err(bad(format!("expected a number, found {:?}", other.data_type()))),
            }),
            ColType::Int => Val::Int(match v {
                ValueRef::Integer(x) => x,
                other => return Err(bad(format!("expected an integer, found {:?}", other.data_type()))),
            }),
            ColType::Date => Val::Date(
                text()?
                    .map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| bad(format!("{s:?}: {e}"))))
                    .transpose()?,
            ),
            ColType::Time => Val::Time(text()?.map(|s| parse_time(table.name, col, s)).transpose()?),
            ColType::Json => {
                Val::Json(text()?.map(|s| serde_json::from_str(s).map_err(|e| bad(e.to_string()))).transpose()?)
            }
            ColType::Geom => match v {
                ValueRef::Blob(b) => {
                    Val::Geom(decode_gpkg(b).map_err(|e| StoreError::Geometry { table: table.name, detail: e })?)
                }
                other => return Err(bad(format!("expected a geometry blob, found {:?}", other.data_type()))),
            },
        });
    }
    Ok(out)
}

/// Encodes a geometry as GeoPackage binary: the `GP` header (little endian, SRS 4490, an XY
/// envelope except for points, which GDAL also writes without one) followed by standard WKB.
pub fn encode_gpkg(g: &Geometry<f64>) -> Result<Vec<u8>, String> {
    let wkb = g.to_wkb(CoordDimensions::xy()).map_err(|e| e.to_string())?;
    let envelope = match g {
        Geometry::Point(_) => None,
        _ => g.bounding_rect(),
    };
    let mut out = Vec::with_capacity(8 + 32 + wkb.len());
    out.extend_from_slice(b"GP");
    out.push(0); // version 1.0
    // flags: bit 0 little endian; bits 1-3 envelope kind (1 = [minx, maxx, miny, maxy]).
    out.push(if envelope.is_some() { 0b0000_0011 } else { 0b0000_0001 });
    out.extend_from_slice(&SRS_ID.to_le_bytes());
    if let Some(r) = envelope {
        for v in [r.min().x, r.max().x, r.min().y, r.max().y] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&wkb);
    Ok(out)
}

/// Decodes GeoPackage binary (any byte order, any envelope kind) into a `geo` geometry.
pub fn decode_gpkg(bytes: &[u8]) -> Result<Geometry<f64>, String> {
    if bytes.len() < 8 || &bytes[0..2] != b"GP" {
        return Err("not GeoPackage binary (missing GP magic)".into());
    }
    let flags = bytes[3];
    let env_len = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 32,
        2 | 3 => 48,
        4 => 64,
        k => return Err(format!("invalid envelope indicator {k}")),
    };
    let start = 8 + env_len;
    if bytes.len() <= start {
        return Err("truncated GeoPackage geometry".into());
    }
    geozero::wkb::Wkb(&bytes[start..]).to_geo().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{point, polygon};

    #[test]
    fn gpkg_binary_round_trips_points_and_polygons() {
        let p: Geometry<f64> = point!(x: 88.88, y: 29.27).into();
        let bytes = encode_gpkg(&p).unwrap();
        assert_eq!(&bytes[..2], b"GP");
        assert_eq!(i32::from_le_bytes(bytes[4..8].try_into().unwrap()), 4490);
        assert_eq!(decode_gpkg(&bytes).unwrap(), p);

        let poly: Geometry<f64> =
            polygon![(x: 88.0, y: 29.0), (x: 88.1, y: 29.0), (x: 88.1, y: 29.1), (x: 88.0, y: 29.0)].into();
        let bytes = encode_gpkg(&poly).unwrap();
        assert_eq!(bytes[3], 0b11, "polygons carry an XY envelope");
        let minx = f64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let maxy = f64::from_le_bytes(bytes[32..40].try_into().unwrap());
        assert_eq!((minx, maxy), (88.0, 29.1));
        assert_eq!(decode_gpkg(&bytes).unwrap(), poly);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_gpkg(b"XX").is_err());
        assert!(decode_gpkg(b"GP\0\x01\0\0\0\0").is_err());
        assert!(decode_gpkg(b"GP\0\x0f\0\0\0\0abcdef").is_err());
    }
}
