//! The production store: PostgreSQL with PostGIS, geometry in SRID 4490 behind GiST indexes,
//! migrated with `sqlx::migrate!` at start-up.

use async_trait::async_trait;
use futures::TryStreamExt;
use geozero::{CoordDimensions, ToGeo, ToWkb};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row as _};
use tokio::sync::watch;

use super::cluster::{self, Tasks};
use super::evaluation::{By, Counts, Dialect, Period, counts_sql};
use super::log::{self, ChangeRow, Logged};
use super::queue::{CaseWrites, NewCase, StepWrite};
use super::schema::{self, ColType, Filter, RowReader, RowSink, RowWriter, Table, Val, unsupported_filter};
use super::{AlarmSaved, Progress, Store, StoreError};
use chrono::{DateTime, Utc};

use crate::model::{Alarm, Case, CaseStep, City, PatrolDay, PatrolVisit, Position, Reading, ReadingBucket};
use schema::Row;

pub struct PostgisStore {
    pool: PgPool,
    /// Where the lease's own connection goes.
    opts: PgConnectOptions,
    /// The listener and the lease, started on first use (a CLI command needs neither).
    tasks: Tasks,
    announced: std::sync::OnceLock<watch::Receiver<i64>>,
    leader: std::sync::OnceLock<watch::Receiver<bool>>,
    read_only: bool,
    /// Workflow steps and new cases, written in group-committed batches (one turn at the
    /// change log's lock per batch).
    writes: CaseWrites,
}

impl PostgisStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, false).await
    }

    /// Opens the database `read_only` (a process that only serves reads, possibly from a hot
    /// standby): no migration, and it never takes the singleton lease.
    pub async fn open_with(url: &str, read_only: bool) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        // A short wait for a connection: while PostgreSQL restarts, a request fails fast with
        // 503 rather than holding its client for half a minute.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(opts.clone())
            .await?;
        if !read_only {
            sqlx::migrate!("migrations/postgis").run(&pool).await?;
        }
        let (steps_pool, cases_pool) = (pool.clone(), pool.clone());
        let writes = CaseWrites::start(
            move |batch| {
                let pool = steps_pool.clone();
                async move { write_steps(&pool, batch).await }
            },
            move |batch| {
                let pool = cases_pool.clone();
                async move { write_cases(&pool, batch).await }
            },
        );
        Ok(PostgisStore {
            pool,
            opts,
            writes,
            tasks: Tasks::default(),
            announced: Default::default(),
            leader: Default::default(),
            read_only,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PostgisStore {
    fn kind(&self) -> &'static str {
        "postgis"
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let any: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM grids)").fetch_one(&self.pool).await?;
        Ok(any)
    }

    async fn write_city(&self, city: &City, progress: Progress<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut io = PgIo { conn: &mut tx };
        schema::write_city_rows(&mut io, city, progress).await?;
        // Demo and imported cases carry their own ids; move the identity past them so new
        // cases never collide.
        sqlx::query("SELECT setval(pg_get_serial_sequence('cases', 'id'), GREATEST((SELECT max(id) FROM cases), 1))")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Fresh statistics make the first spatial queries use the GiST indexes. The city is
        // already committed, so a failure here is only worth a warning.
        if let Err(e) = sqlx::query("ANALYZE").execute(&self.pool).await {
            tracing::warn!(error = %e, "ANALYZE after writing the city failed");
        }
        Ok(())
    }

    async fn load_city(&self, progress: Progress<'_>) -> Result<City, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut io = PgIo { conn: &mut conn };
        schema::load_city_rows(&mut io, progress).await
    }

    async fn locate_in_db(&self, points: &[(f64, f64)]) -> Result<Option<Vec<Option<String>>>, StoreError> {
        let lons: Vec<f64> = points.iter().map(|p| p.0).collect();
        let lats: Vec<f64> = points.iter().map(|p| p.1).collect();
        // The same rule as the in-memory index: boundary points count, and the smallest code wins.
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT p.i, g.code FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS p(lon, lat, i) \
             LEFT JOIN LATERAL (SELECT code FROM grids \
                 WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4490)) \
                 ORDER BY code LIMIT 1) g ON true ORDER BY p.i",
        )
        .bind(&lons)
        .bind(&lats)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(rows.into_iter().map(|r| r.1).collect()))
    }

    async fn select(&self, table: &'static Table, filter: Filter) -> Result<Vec<Vec<Val>>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::new();
        PgIo { conn: &mut conn }
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
        let mut tx = self.pool.begin().await?;
        let (_, change) = super::import_body!(
            tx,
            table,
            rows,
            source,
            progress,
            |n| sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, $1)")
                .bind(n)
                .fetch_all(&mut *tx)
                .await?,
            PgIo { conn: &mut tx }
        );
        let seqs = log::append!(tx, Postgres, &[change], true);
        tx.commit().await?;
        if let Err(e) = sqlx::query(&format!("ANALYZE {}", table.name)).execute(&self.pool).await {
            tracing::warn!(error = %e, "ANALYZE after an import failed");
        }
        Ok(seqs[0])
    }

    async fn insert_rows(
        &self,
        table: &'static Table,
        rows: Vec<Vec<Val>>,
        changes: Vec<ChangeRow>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        PgIo { conn: &mut tx }.insert_rows(table, &rows).await?;
        let seqs = log::append!(tx, Postgres, &changes, true);
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
        let mut tx = self.pool.begin().await?;
        let mut qb = table
            .update::<Postgres>(&row, (key.0, &key.1), (guard.0, &guard.1), |b, v| bind(b, v, &mut std::iter::empty()));
        if qb.build().execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(None);
        }
        let seqs = log::append!(tx, Postgres, &changes, true);
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
        let mut tx = self.pool.begin().await?;
        let seqs = log::append!(tx, Postgres, &changes, true);
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
        let done = sqlx::query(log::PRUNE_SQL).bind(before.timestamp_millis()).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn evaluation_counts(&self, by: By, period: Period) -> Result<Vec<(String, Counts)>, StoreError> {
        // A year of a big city groups a million cases into tens of thousands of grids: give the
        // aggregation the memory to hash in place of sorting on disk, skip JIT compilation (it
        // costs more than it saves here), and plan for the actual period (a month is an index
        // range, two years a parallel scan) rather than once for any period.
        let mut tx = self.pool.begin().await?;
        for setting in ["work_mem = '256MB'", "jit = off", "plan_cache_mode = force_custom_plan"] {
            sqlx::query(&format!("SET LOCAL {setting}")).execute(&mut *tx).await?;
        }
        let rows = sqlx::query(&counts_sql(by, Dialect::Postgres))
            .bind(period.start)
            .bind(period.end)
            .bind(period.as_of)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(super::counts_row).collect()
    }

    async fn insert_readings(&self, readings: &[Reading]) -> Result<(Vec<bool>, Option<i64>), StoreError> {
        if readings.is_empty() {
            return Ok((Vec::new(), None));
        }
        let codes: Vec<&str> = readings.iter().map(|r| r.sensor.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = readings.iter().map(|r| r.at).collect();
        let values: Vec<f64> = readings.iter().map(|r| r.value).collect();
        // One statement: the conflict clause drops readings already stored, RETURNING names the
        // ones that went in.
        let mut tx = self.pool.begin().await?;
        let new: Vec<i64> = sqlx::query_scalar(
            "WITH input AS (SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[]) \
                 WITH ORDINALITY AS t(sensor_code, at, value, i)), \
             ins AS (INSERT INTO sensor_readings (sensor_code, at, value) \
                 SELECT sensor_code, at, value FROM input ON CONFLICT DO NOTHING RETURNING sensor_code, at) \
             SELECT input.i FROM input JOIN ins USING (sensor_code, at)",
        )
        .bind(&codes)
        .bind(&ats)
        .bind(&values)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = vec![false; readings.len()];
        for i in new {
            out[i as usize - 1] = true;
        }
        let change: Vec<ChangeRow> = log::readings_change(readings, &out).into_iter().collect();
        let seqs = log::append!(tx, Postgres, &change, true);
        tx.commit().await?;
        Ok((out, seqs.first().copied()))
    }

    async fn count_readings(&self, sensor: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM sensor_readings WHERE sensor_code = $1 AND at >= $2 AND at < $3")
            .bind(sensor)
            .bind(from)
            .bind(to)
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
        let rows: Vec<(DateTime<Utc>, f64, f64, f64, i64)> = match bucket_s {
            None => {
                sqlx::query_as(
                    "SELECT at, value, value, value, 1::int8 FROM sensor_readings \
                     WHERE sensor_code = $1 AND at >= $2 AND at < $3 ORDER BY at",
                )
                .bind(sensor)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?
            }
            Some(b) => {
                sqlx::query_as(
                    "SELECT date_bin(make_interval(secs => $4), at, 'epoch'::timestamptz) AS t, avg(value), \
                     min(value), max(value), count(*) FROM sensor_readings \
                     WHERE sensor_code = $1 AND at >= $2 AND at < $3 GROUP BY t ORDER BY t",
                )
                .bind(sensor)
                .bind(from)
                .bind(to)
                .bind(b as f64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(|(at, value, min, max, n)| ReadingBucket { at, value, min, max, n }).collect())
    }

    async fn latest_readings(&self) -> Result<Vec<Reading>, StoreError> {
        // One index probe per registered sensor rather than a scan of every reading.
        let rows: Vec<(String, DateTime<Utc>, f64)> = sqlx::query_as(
            "SELECT s.code, r.at, r.value FROM sensors s CROSS JOIN LATERAL \
             (SELECT at, value FROM sensor_readings WHERE sensor_code = s.code ORDER BY at DESC LIMIT 1) r",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(sensor, at, value)| Reading { sensor: sensor.into(), at, value }).collect())
    }

    async fn insert_positions(
        &self,
        positions: &[Position],
        days: &[PatrolDay],
        visits: &[PatrolVisit],
        change: ChangeRow,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = super::tracks::insert_positions_tx!(
            tx,
            Postgres,
            true,
            "at",
            |t: DateTime<Utc>| t,
            "LEAST",
            "GREATEST",
            positions,
            days,
            visits,
            change
        );
        tx.commit().await?;
        Ok(seq)
    }

    async fn latest_positions(&self) -> Result<Vec<Position>, StoreError> {
        // One index probe per registered member rather than a scan of every position.
        let rows: Vec<(String, DateTime<Utc>, f64, f64, Option<String>)> = sqlx::query_as(
            "SELECT s.code, p.at, p.lon, p.lat, p.grid_code FROM staff s CROSS JOIN LATERAL \
             (SELECT at, lon, lat, grid_code FROM staff_positions WHERE staff_code = s.code ORDER BY at DESC LIMIT 1) p",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(position).collect())
    }

    async fn track(
        &self,
        staff: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Position>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>, f64, f64, Option<String>)> = sqlx::query_as(
            "SELECT staff_code, at, lon, lat, grid_code FROM staff_positions \
             WHERE staff_code = $1 AND at >= $2 AND at < $3 ORDER BY at LIMIT $4",
        )
        .bind(staff)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(position).collect())
    }

    async fn patrol(&self, day: chrono::NaiveDate) -> Result<(Vec<PatrolDay>, Vec<PatrolVisit>), StoreError> {
        let days: Vec<(String, i64, f64, f64, i64, i64)> = sqlx::query_as(
            "SELECT staff_code, positions, distance_m, duty_s, first_ms, last_ms FROM patrol_days WHERE day = $1",
        )
        .bind(day)
        .fetch_all(&self.pool)
        .await?;
        let visits: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT staff_code, grid_code, positions, first_ms, last_ms FROM patrol_visits WHERE day = $1",
        )
        .bind(day)
        .fetch_all(&self.pool)
        .await?;
        let days = days
            .into_iter()
            .map(|(staff, positions, distance_m, duty_s, first_ms, last_ms)| PatrolDay {
                day,
                staff: staff.into(),
                positions,
                distance_m,
                duty_s,
                first_ms,
                last_ms,
            })
            .collect();
        let visits = visits
            .into_iter()
            .map(|(staff, grid, positions, first_ms, last_ms)| PatrolVisit {
                day,
                staff: staff.into(),
                grid: grid.into(),
                positions,
                first_ms,
                last_ms,
            })
            .collect();
        Ok((days, visits))
    }

    async fn save_alarm(&self, a: &Alarm, change: ChangeRow) -> Result<AlarmSaved, StoreError> {
        let mut tx = self.pool.begin().await?;
        let read = |t: DateTime<Utc>| Ok::<_, StoreError>(t);
        super::alarms::save_alarm_tx!(tx, Postgres, true, a, change, |t: DateTime<Utc>| t, DateTime<Utc>, read)
    }

    async fn alarms(&self, active: bool, limit: i64) -> Result<Vec<Alarm>, StoreError> {
        super::alarms::alarms_body!(&self.pool, active, limit, DateTime<Utc>, |t: DateTime<Utc>| Ok(t))
    }

    fn announcements(&self) -> Option<watch::Receiver<i64>> {
        let rx = self.announced.get_or_init(|| {
            let tx = std::sync::Arc::new(watch::channel(0).0);
            let rx = tx.subscribe();
            self.tasks.spawn(cluster::listen(self.pool.clone(), tx));
            rx
        });
        Some(rx.clone())
    }

    fn leadership(&self) -> watch::Receiver<bool> {
        self.leader
            .get_or_init(|| {
                let tx = std::sync::Arc::new(watch::channel(false).0);
                let rx = tx.subscribe();
                if self.read_only {
                    // Kept alive so the value stays readable; it never turns true.
                    self.tasks.spawn(async move {
                        std::future::pending::<()>().await;
                        drop(tx)
                    });
                } else {
                    self.tasks.spawn(cluster::lease(self.opts.clone(), tx));
                }
                rx
            })
            .clone()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        // Ending the lease's session hands the singletons to another replica at once.
        self.tasks.stop();
        self.pool.close().await;
    }
}

/// Binds one value in PostgreSQL's dialect; geometry takes the next of `geoms` (WKB).
/// Writes a batch of workflow steps as one statement (so one round trip and one transaction):
/// the batch's values feed a guarded update of the cases, and the history insert takes only the
/// steps whose case was still at its expected version. The queue puts at most one step per case
/// in a batch, so every join here is one to one.
/// A stored position.
fn position((staff, at, lon, lat, grid): (String, DateTime<Utc>, f64, f64, Option<String>)) -> Position {
    Position { staff: staff.into(), at, lon, lat, grid_code: grid.map(Into::into) }
}

async fn write_steps(pool: &PgPool, batch: Vec<StepWrite>) -> Result<Vec<Option<i64>>, StoreError> {
    let case_cols: Vec<&str> = schema::CASE_WORKFLOW.cols.iter().map(|c| c.0).collect();
    let step_cols: Vec<&str> = schema::CASE_STEPS.cols.iter().map(|c| c.0).collect();
    let input: Vec<String> = std::iter::once("expected".to_string())
        .chain(case_cols.iter().map(|c| format!("c_{c}")))
        .chain(step_cols.iter().map(|c| format!("s_{c}")))
        .collect();
    let rows: Vec<Vec<Val>> = batch
        .iter()
        .map(|w| {
            let mut row = vec![Val::Int(w.expected as i64)];
            row.extend(schema::case_workflow_row(&w.case));
            row.extend(w.step.to_row());
            row
        })
        .collect();
    let mut qb = sqlx::QueryBuilder::<Postgres>::new(format!("WITH input ({}) AS (", input.join(", ")));
    qb.push_values(&rows, |mut b, row| {
        for v in row {
            bind(&mut b, v, &mut std::iter::empty());
        }
    });
    let set: Vec<&str> = case_cols.iter().copied().filter(|c| *c != "id").collect();
    let from_input: Vec<String> = set.iter().map(|c| format!("i.c_{c}")).collect();
    let step_values: Vec<String> = step_cols.iter().map(|c| format!("i.s_{c}")).collect();
    qb.push(format!(
        "), moved AS (UPDATE cases c SET ({}) = ({}) FROM input i WHERE c.id = i.c_id AND c.version = i.expected \
         RETURNING c.id) INSERT INTO case_steps ({}) SELECT {} FROM input i JOIN moved m ON m.id = i.c_id \
         RETURNING case_id",
        set.join(", "),
        from_input.join(", "),
        step_cols.join(", "),
        step_values.join(", ")
    ));
    let mut tx = pool.begin().await?;
    let written: std::collections::HashSet<i64> =
        qb.build_query_scalar::<i64>().fetch_all(&mut *tx).await?.into_iter().collect();
    let changes: Vec<ChangeRow> =
        batch.iter().filter(|w| written.contains(&w.case.id)).map(|w| w.change.clone()).collect();
    let mut seqs = log::append!(tx, Postgres, &changes, true).into_iter();
    tx.commit().await?;
    Ok(batch.iter().map(|w| if written.contains(&w.case.id) { seqs.next() } else { None }).collect())
}

/// Writes a batch of new cases in one transaction: ids, rows, first steps and changes.
async fn write_cases(pool: &PgPool, batch: Vec<NewCase>) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, $1)")
            .bind(batch.len() as i64)
            .fetch_all(&mut *tx)
            .await?;
    let changes = schema::write_new_cases(&mut PgIo { conn: &mut tx }, &ids, &batch).await?;
    let seqs = log::append!(tx, Postgres, &changes, true);
    tx.commit().await?;
    Ok(ids.into_iter().zip(seqs).collect())
}

fn bind<'a>(
    b: &mut sqlx::query_builder::Separated<'_, 'a, Postgres, &'static str>,
    v: &'a Val,
    geoms: &mut impl Iterator<Item = Vec<u8>>,
) {
    if !schema::bind_plain(b, v) {
        match v {
            Val::Time(t) => b.push_bind(*t),
            Val::Json(j) => b.push_bind(j.clone().map(sqlx::types::Json)),
            _ => b
                .push("ST_GeomFromWKB(")
                .push_bind_unseparated(geoms.next().expect("one encoding per geometry"))
                .push_unseparated(", 4490)"),
        };
    }
}

struct PgIo<'c> {
    conn: &'c mut sqlx::PgConnection,
}

#[async_trait]
impl RowWriter for PgIo<'_> {
    async fn insert_rows(&mut self, table: &'static Table, rows: &[Vec<Val>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut geoms = table.encode_geoms(rows, |g| g.to_wkb(CoordDimensions::xy()))?.into_iter();
        let mut qb = table.insert::<Postgres>(rows, |b, v| bind(b, v, &mut geoms));
        qb.build().execute(&mut *self.conn).await?;
        Ok(())
    }
}

#[async_trait]
impl RowReader for PgIo<'_> {
    async fn select_each(
        &mut self,
        table: &'static Table,
        filter: Filter,
        sink: RowSink<'_>,
    ) -> Result<(), StoreError> {
        let sql = table.select(&filter, schema::order_column(table), |name, ty| match ty {
            ColType::Geom => format!("ST_AsBinary({name})"),
            ColType::Int => format!("{name}::int8"),
            _ => name.to_string(),
        });
        let mut query = sqlx::query(&sql);
        match filter {
            Filter::All => {}
            Filter::Eq(_, Val::Int(v)) | Filter::Imported(v) => query = query.bind(v),
            Filter::Eq(_, Val::Text(v)) => query = query.bind(v.map(|v| v.to_string())),
            Filter::Eq(col, _) => return Err(unsupported_filter(table, col)),
        }
        let mut rows = query.fetch(&mut *self.conn);
        while let Some(row) = rows.try_next().await? {
            sink(read_row(table, &row)?)?;
        }
        Ok(())
    }
}

fn read_row(table: &'static Table, row: &PgRow) -> Result<Vec<Val>, StoreError> {
    let mut out = Vec::with_capacity(table.cols.len());
    for (i, (_, ty)) in table.cols.iter().enumerate() {
        let v = match ty {
            ColType::Text => Val::Text(row.try_get::<Option<String>, _>(i)?.map(Into::into)),
            // An optional number left out is NaN, as in the GeoPackage store.
            ColType::Real => Val::Real(row.try_get::<Option<f64>, _>(i)?.unwrap_or(f64::NAN)),
            ColType::Int => Val::Int(row.try_get(i)?),
            ColType::Date => Val::Date(row.try_get(i)?),
            ColType::Time => Val::Time(row.try_get(i)?),
            ColType::Json => Val::Json(row.try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(i)?.map(|j| j.0)),
            ColType::Geom => {
                let bytes: Vec<u8> = row.try_get(i)?;
                Val::Geom(
                    geozero::wkb::Wkb(&bytes[..])
                        .to_geo()
                        .map_err(|e| StoreError::Geometry { table: table.name, detail: e.to_string() })?,
                )
            }
        };
        out.push(v);
    }
    Ok(out)
}
