//! The writes and reads that walk tables through a backend: a whole city, an import, a new case.
//! Written once here over the backends' [`RowWriter`] and [`RowReader`].

use super::*;
use crate::model::*;
use crate::store::StoreError;

/// Receives rows one by one while a table is read.
pub type RowSink<'a> = &'a mut (dyn FnMut(Vec<Val>) -> Result<(), StoreError> + Send);

/// Backend-side row writing, so `write_city` is written once over all tables.
#[async_trait::async_trait]
pub trait RowWriter {
    /// Inserts rows into `table` within the backend's open transaction.
    async fn insert_rows(&mut self, table: &'static Table, rows: &[Vec<Val>]) -> Result<(), StoreError>;
}

/// Backend-side row reading, so `load_city` is written once over all tables.
#[async_trait::async_trait]
pub trait RowReader {
    /// Streams every row of `table` (or, with `filter`, those whose column equals the value) in a
    /// stable order into `sink`, one at a time, so a ten-million-row table never sits in memory
    /// twice.
    async fn select_each(&mut self, table: &'static Table, filter: Filter, sink: RowSink<'_>)
    -> Result<(), StoreError>;
}

/// Writes a batch of new cases under the ids the backend allocated (one per case, in order) with
/// their first history steps, a statement per table; returns their changes, named after the ids.
pub async fn write_new_cases(
    io: &mut (dyn RowWriter + Send),
    ids: &[i64],
    batch: &[crate::store::queue::NewCase],
) -> Result<Vec<crate::store::log::ChangeRow>, StoreError> {
    let cases: Vec<Vec<Val>> = batch.iter().zip(ids).map(|(n, &id)| Case { id, ..n.case.clone() }.to_row()).collect();
    let steps: Vec<Vec<Val>> =
        batch.iter().zip(ids).map(|(n, &id)| CaseStep { case_id: id, ..n.first.clone() }.to_row()).collect();
    for chunk in cases.chunks(crate::store::batch_rows(&CASES)) {
        io.insert_rows(&CASES, chunk).await?;
    }
    for chunk in steps.chunks(crate::store::batch_rows(&CASE_STEPS)) {
        io.insert_rows(&CASE_STEPS, chunk).await?;
    }
    Ok(batch.iter().zip(ids).map(|(n, &id)| n.change.clone().with_id(id)).collect())
}

/// How many imports keep their keys for running servers to pick up.
pub const IMPORTS_KEPT: i64 = 20;

/// The statement recording an import; the same text in both dialects.
pub const IMPORT_SQL: &str = "INSERT INTO imports (collection, features, source) VALUES ($1, $2, $3) RETURNING seq";
/// Forgets the keys of all but the latest imports (`$1`: the oldest sequence number to drop).
pub const PRUNE_IMPORT_KEYS_SQL: &str = "DELETE FROM import_keys WHERE seq <= $1";

/// The body of an import once the backend has opened its transaction, recorded the import as
/// `seq` and (for cases) allocated `ids`: the rows in batches, each new case's first history
/// step, and the keys.
pub async fn write_import(
    io: &mut (dyn RowWriter + Send),
    table: &'static Table,
    mut rows: Vec<Vec<Val>>,
    seq: i64,
    ids: &[i64],
    source: &str,
    progress: crate::store::Progress<'_>,
) -> Result<(), StoreError> {
    let mut keys = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter_mut().enumerate() {
        if table.name == CASES.name {
            row[0] = Val::Int(ids[i]);
        }
        keys.push(match &row[0] {
            Val::Text(Some(k)) => k.to_string(),
            Val::Int(k) => k.to_string(),
            other => {
                return Err(StoreError::Value {
                    table: table.name,
                    column: table.cols[0].0,
                    detail: format!("{other:?}"),
                });
            }
        });
    }
    let mut done = 0;
    for chunk in rows.chunks(crate::store::batch_rows(table)) {
        io.insert_rows(table, chunk).await?;
        done += chunk.len();
        progress(table.name, done);
    }
    if table.name == CASES.name {
        let steps: Vec<Vec<Val>> = rows
            .iter()
            .map(|r| Case::from_row(r.clone()).map(|c| import_step(&c, source).to_row()))
            .collect::<Result<_, _>>()?;
        for chunk in steps.chunks(crate::store::batch_rows(&CASE_STEPS)) {
            io.insert_rows(&CASE_STEPS, chunk).await?;
        }
    }
    let key_rows: Vec<Vec<Val>> = keys.into_iter().map(|k| vec![Val::Int(seq), Val::Text(Some(k.into()))]).collect();
    for chunk in key_rows.chunks(crate::store::batch_rows(&IMPORT_KEYS)) {
        io.insert_rows(&IMPORT_KEYS, chunk).await?;
    }
    Ok(())
}

/// The first history step of an imported case: it arrived in its stated status.
fn import_step(c: &Case, source: &str) -> CaseStep {
    CaseStep {
        case_id: c.id,
        seq: 1,
        action: "import".into(),
        actor: "import".into(),
        role: "admin".into(),
        dept_code: c.dept_code.clone(),
        status_from: None,
        status_to: c.status,
        at: c.reported_at,
        note: Some(format!("imported from {source}")),
    }
}

/// Writes every table of a city through a backend, in batches, reporting progress.
pub async fn write_city_rows(
    io: &mut (dyn RowWriter + Send),
    city: &City,
    progress: crate::store::Progress<'_>,
) -> Result<(), StoreError> {
    write_table(io, &city.districts, progress).await?;
    write_table(io, &city.streets, progress).await?;
    write_table(io, &city.communities, progress).await?;
    write_table(io, &city.grids, progress).await?;
    write_table(io, &city.departments, progress).await?;
    write_table(io, &city.responsibilities, progress).await?;
    write_table(io, &city.component_classes, progress).await?;
    write_table(io, &city.event_classes, progress).await?;
    write_table(io, &city.components, progress).await?;
    write_table(io, &city.cases, progress).await?;
    write_table(io, &city.case_steps, progress).await?;
    write_table(io, &city.sensors, progress).await?;
    write_table(io, &city.staff, progress).await?;
    write_table(io, &city.cameras, progress).await?;
    Ok(())
}

async fn write_table<T: Row + Sync>(
    io: &mut (dyn RowWriter + Send),
    items: &[T],
    progress: crate::store::Progress<'_>,
) -> Result<(), StoreError> {
    let mut done = 0;
    for chunk in items.chunks(crate::store::batch_rows(T::table())) {
        let rows: Vec<Vec<Val>> = chunk.iter().map(Row::to_row).collect();
        io.insert_rows(T::table(), &rows).await?;
        done += chunk.len();
        progress(T::table().name, done);
    }
    Ok(())
}

/// Loads every table of a city through a backend.
pub async fn load_city_rows(
    io: &mut (dyn RowReader + Send),
    progress: crate::store::Progress<'_>,
) -> Result<City, StoreError> {
    Ok(City {
        districts: load_table(io, progress).await?,
        streets: load_table(io, progress).await?,
        communities: load_table(io, progress).await?,
        grids: load_table(io, progress).await?,
        departments: load_table(io, progress).await?,
        responsibilities: load_table(io, progress).await?,
        component_classes: load_table(io, progress).await?,
        event_classes: load_table(io, progress).await?,
        components: load_table(io, progress).await?,
        cases: load_table(io, progress).await?,
        // Histories are read per case on demand, never all at once.
        case_steps: Vec::new(),
        sensors: load_table(io, progress).await?,
        // Where they were last seen comes from the tracks (see `Store::latest_positions`).
        staff: load_table(io, progress).await?,
        cameras: load_table(io, progress).await?,
    })
}

async fn load_table<T: Row + Send>(
    io: &mut (dyn RowReader + Send),
    progress: crate::store::Progress<'_>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    let name = T::table().name;
    io.select_each(T::table(), Filter::All, &mut |row| {
        out.push(T::from_row(row)?);
        if out.len() % 100_000 == 0 {
            progress(name, out.len());
        }
        Ok(())
    })
    .await?;
    progress(name, out.len());
    Ok(out)
}
