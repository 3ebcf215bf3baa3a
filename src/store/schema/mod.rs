//! The table layout shared by both stores, in three parts: which columns each table has and what
//! a read may filter on (here), how a model record maps to a row of neutral values and back
//! ([`rows`]), and the writes and reads that walk every table through a backend ([`io`]).
//! Backends bind these values in their own dialect.

mod io;
mod rows;

pub use io::*;
pub use rows::*;

use chrono::{DateTime, NaiveDate, Utc};
use geo::Geometry;

use super::StoreError;
use crate::model::*;

/// The kind of a column, which decides how each backend binds and reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Real,
    Int,
    Date,
    Time,
    Json,
    /// The one geometry column of a feature table, always named `geom`, SRID 4490.
    Geom,
}

/// One cell of a row, independent of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(Option<Str>),
    Real(f64),
    Int(i64),
    Date(Option<NaiveDate>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
    Geom(Geometry<f64>),
}

/// A table and its columns, in insert/select order.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub cols: &'static [(&'static str, ColType)],
}

impl Table {
    /// A multi-row insert of `rows`: the columns are shared, `bind` pushes one value in the
    /// backend's dialect (most kinds through [`bind_plain`]).
    pub fn insert<'a, DB: sqlx::Database>(
        &self,
        rows: &'a [Vec<Val>],
        mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, 'a, DB, &'static str>, &'a Val),
    ) -> sqlx::QueryBuilder<'a, DB> {
        let cols: Vec<&str> = self.cols.iter().map(|c| c.0).collect();
        let mut qb = sqlx::QueryBuilder::new(format!("INSERT INTO {} ({}) ", self.name, cols.join(", ")));
        qb.push_values(rows, |mut b, row| {
            for v in row {
                bind(&mut b, v);
            }
        });
        qb
    }

    /// `UPDATE` of every column but the geometry and `key` to the values of `row`, for the row
    /// whose `key` column equals `key_val` and whose `guard` column equals `guard_val` (optimistic
    /// concurrency: the statement changes nothing when another writer got there first).
    /// Row-value syntax, `SET (a, b) = (x, y)`, which PostgreSQL and SQLite share.
    pub fn update<'a, DB: sqlx::Database>(
        &self,
        row: &'a [Val],
        (key, key_val): (&str, &'a Val),
        (guard, guard_val): (&str, &'a Val),
        mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, 'a, DB, &'static str>, &'a Val),
    ) -> sqlx::QueryBuilder<'a, DB> {
        let set: Vec<(&str, &'a Val)> = self
            .cols
            .iter()
            .zip(row)
            .filter(|((n, t), _)| *t != ColType::Geom && *n != key)
            .map(|((n, _), v)| (*n, v))
            .collect();
        let names: Vec<&str> = set.iter().map(|s| s.0).collect();
        let mut qb = sqlx::QueryBuilder::new(format!("UPDATE {} SET ({}) = (", self.name, names.join(", ")));
        {
            let mut values = qb.separated(", ");
            for (_, v) in &set {
                bind(&mut values, v);
            }
        }
        qb.push(format!(") WHERE {key} = "));
        bind(&mut qb.separated(""), key_val);
        qb.push(format!(" AND {guard} = "));
        bind(&mut qb.separated(""), guard_val);
        qb
    }

    /// `SELECT` of every column ordered by `order` (a stable order the backend reads fast),
    /// each column written by `expr` (a backend's conversion, such as PostGIS's
    /// `ST_AsBinary(geom)`), restricted by `filter`, whose one value (if any) is the statement's
    /// one parameter (`$1`, which both PostgreSQL and SQLite accept).
    pub fn select(&self, filter: &Filter, order: &str, expr: impl Fn(&str, ColType) -> String) -> String {
        let cols: Vec<String> = self.cols.iter().map(|&(name, ty)| expr(name, ty)).collect();
        let filter = match filter {
            Filter::All => String::new(),
            Filter::Eq(col, _) => format!(" WHERE {col} = $1"),
            Filter::Imported(_) => {
                let (key, ty) = self.cols[0];
                let key = if ty == ColType::Text { key.to_string() } else { format!("CAST({key} AS TEXT)") };
                format!(" WHERE {key} IN (SELECT key FROM import_keys WHERE seq = $1)")
            }
        };
        format!("SELECT {} FROM {}{filter} ORDER BY {order}", cols.join(", "), self.name)
    }

    /// Encodes every geometry of `rows` up front, so binding cannot fail half-way.
    pub fn encode_geoms<E>(
        &'static self,
        rows: &[Vec<Val>],
        encode: impl Fn(&Geometry<f64>) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<Vec<u8>>, StoreError>
    where
        E: std::fmt::Display,
    {
        rows.iter()
            .flat_map(|r| r.iter())
            .filter_map(|v| if let Val::Geom(g) = v { Some(g) } else { None })
            .map(|g| encode(g).map_err(|e| StoreError::Geometry { table: self.name, detail: e.to_string() }))
            .collect()
    }
}

/// Binds the value kinds both backends bind alike; returns false for the dialect-specific ones
/// (timestamps, JSON, geometry).
pub fn bind_plain<'a, DB: sqlx::Database>(
    b: &mut sqlx::query_builder::Separated<'_, 'a, DB, &'static str>,
    v: &'a Val,
) -> bool
where
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<NaiveDate>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match v {
        Val::Text(s) => b.push_bind(s.as_ref().map(|s| s.to_string())),
        Val::Real(x) => b.push_bind(*x),
        Val::Int(x) => b.push_bind(*x),
        Val::Date(d) => b.push_bind(*d),
        Val::Time(_) | Val::Json(_) | Val::Geom(_) => return false,
    };
    true
}

use ColType::*;

pub static DISTRICTS: Table = Table { name: "districts", cols: &[("code", Text), ("name", Text), ("geom", Geom)] };
pub static STREETS: Table =
    Table { name: "streets", cols: &[("code", Text), ("name", Text), ("district_code", Text), ("geom", Geom)] };
pub static COMMUNITIES: Table =
    Table { name: "communities", cols: &[("code", Text), ("name", Text), ("street_code", Text), ("geom", Geom)] };
pub static GRIDS: Table = Table {
    name: "grids",
    cols: &[("code", Text), ("name", Text), ("community_code", Text), ("area_m2", Real), ("geom", Geom)],
};
pub static DEPARTMENTS: Table =
    Table { name: "departments", cols: &[("code", Text), ("name", Text), ("kind", Text), ("region_code", Text)] };
pub static RESPONSIBILITIES: Table =
    Table { name: "responsibilities", cols: &[("dept_code", Text), ("scope", Text), ("target", Text), ("role", Text)] };
pub static COMPONENT_CLASSES: Table = Table {
    name: "component_classes",
    cols: &[("code", Text), ("major", Text), ("name", Text), ("geom_type", Text), ("competent_dept", Text)],
};
pub static EVENT_CLASSES: Table =
    Table { name: "event_classes", cols: &[("code", Text), ("major", Text), ("name", Text), ("default_dept", Text)] };
pub static COMPONENTS: Table = Table {
    name: "components",
    cols: &[
        ("code", Text),
        ("class_code", Text),
        ("name", Text),
        ("status", Text),
        ("competent_dept", Text),
        ("owner_dept", Text),
        ("maint_dept", Text),
        ("grid_code", Text),
        ("survey_date", Date),
        ("change_date", Date),
        ("source", Text),
        ("geom", Geom),
    ],
};
pub static CASES: Table = Table {
    name: "cases",
    cols: &[
        ("id", Int),
        ("class_code", Text),
        ("kind", Text),
        ("component_code", Text),
        ("description", Text),
        ("source", Text),
        ("status", Text),
        ("urgency", Text),
        ("grid_code", Text),
        ("reported_at", Time),
        ("closed_at", Time),
        ("deadline_at", Time),
        ("dept_code", Text),
        ("version", Int),
        ("geom", Geom),
        ("filed_at", Time),
        ("dispatch_due_at", Time),
        ("dispatched_at", Time),
        ("handled_at", Time),
        ("voided_at", Time),
        ("warn_at", Time),
        ("reworks", Int),
        ("assignee", Text),
        ("assigned_at", Time),
    ],
};
/// The columns of `cases` a workflow step may change (the rest, from class to location, are the
/// report's and stay as reported). Updating only these keeps a step's write small.
const WORKFLOW_COLUMNS: &[&str] = &[
    "id",
    "status",
    "closed_at",
    "deadline_at",
    "dept_code",
    "version",
    "filed_at",
    "dispatch_due_at",
    "dispatched_at",
    "handled_at",
    "voided_at",
    "warn_at",
    "reworks",
    "assignee",
    "assigned_at",
];

/// [`WORKFLOW_COLUMNS`] as a table of `cases`, with the types [`CASES`] gives them.
pub static CASE_WORKFLOW: std::sync::LazyLock<Table> = std::sync::LazyLock::new(|| Table {
    name: "cases",
    cols: WORKFLOW_COLUMNS
        .iter()
        .map(|n| *CASES.cols.iter().find(|c| c.0 == *n).expect("workflow columns are case columns"))
        .collect::<Vec<_>>()
        .leak(),
});

/// The values of `case` in [`CASE_WORKFLOW`]'s columns.
pub fn case_workflow_row(case: &Case) -> Vec<Val> {
    let mut full: Vec<Option<Val>> = case.to_row().into_iter().map(Some).collect();
    WORKFLOW_COLUMNS
        .iter()
        .map(|name| {
            let i = CASES.cols.iter().position(|c| c.0 == *name).expect("workflow columns are case columns");
            full[i].take().expect("each column once")
        })
        .collect()
}

pub static CASE_STEPS: Table = Table {
    name: "case_steps",
    cols: &[
        ("case_id", Int),
        ("seq", Int),
        ("action", Text),
        ("actor", Text),
        ("role", Text),
        ("dept_code", Text),
        ("status_from", Text),
        ("status_to", Text),
        ("at", Time),
        ("note", Text),
    ],
};
pub static API_TOKENS: Table = Table {
    name: "api_tokens",
    cols: &[
        ("hash", Text),
        ("role", Text),
        ("dept_code", Text),
        ("label", Text),
        ("created_at", Time),
        ("area_code", Text),
        ("sensors_prefix", Text),
        ("expires_at", Time),
        ("staff_code", Text),
    ],
};
pub static TOKEN_REVOCATIONS: Table =
    Table { name: "token_revocations", cols: &[("hash", Text), ("revoked_at", Time)] };
pub static SENSORS: Table = Table {
    name: "sensors",
    cols: &[
        ("code", Text),
        ("kind", Text),
        ("name", Text),
        ("component_code", Text),
        ("grid_code", Text),
        ("thresholds", Json),
        ("geom", Geom),
    ],
};

pub static STAFF: Table = Table {
    name: "staff",
    cols: &[
        ("code", Text),
        ("name", Text),
        ("role", Text),
        ("dept_code", Text),
        ("community_code", Text),
        ("grids", Json),
        ("geom", Geom),
    ],
};

/// Video cameras (see [`crate::model::Camera`]).
pub static CAMERAS: Table = Table {
    name: "cameras",
    cols: &[
        ("code", Text),
        ("name", Text),
        ("stream_url", Text),
        ("direction", Real),
        ("grid_code", Text),
        ("geom", Geom),
    ],
};

/// Emergency plans, one row per version (see `crate::linkage::plans`).
pub static PLANS: Table = Table {
    name: "plans",
    cols: &[
        ("code", Text),
        ("version", Int),
        ("name", Text),
        ("body", Json),
        ("created_at", Time),
        ("created_by", Text),
    ],
};

/// Joint-response incidents (see `crate::linkage`): the columns a read filters on, and the
/// whole state as one document.
pub static INCIDENTS: Table = Table {
    name: "incidents",
    cols: &[
        ("id", Text),
        ("plan_code", Text),
        ("plan_version", Int),
        ("status", Text),
        ("auto_key", Text),
        ("alarm_id", Text),
        ("case_id", Text),
        ("lon", Real),
        ("lat", Real),
        ("opened_at", Time),
        ("closed_at", Time),
        ("pending", Int),
        ("version", Int),
        ("state", Json),
    ],
};

/// Case photos (see [`crate::model::Media`]).
pub static CASE_MEDIA: Table = Table {
    name: "case_media",
    cols: &[
        ("id", Text),
        ("case_id", Int),
        ("step", Text),
        ("content_type", Text),
        ("bytes", Int),
        ("width", Int),
        ("height", Int),
        ("taken_at", Time),
        ("place", Json),
        ("object", Text),
        ("thumbnail", Text),
        ("actor", Text),
        ("role", Text),
        ("uploaded_at", Time),
    ],
};

/// The record of each import (see `Store::import`); the demo city marks itself with one.
pub static IMPORTS: Table =
    Table { name: "imports", cols: &[("seq", Int), ("collection", Text), ("features", Int), ("source", Text)] };

/// The keys each import wrote (see `Store::import`).
pub static IMPORT_KEYS: Table = Table { name: "import_keys", cols: &[("seq", Int), ("key", Text)] };

/// Every table in dependency order (parents before children), as written by `write_city`.
pub static ALL: [&Table; 13] = [
    &DISTRICTS,
    &STREETS,
    &COMMUNITIES,
    &GRIDS,
    &DEPARTMENTS,
    &RESPONSIBILITIES,
    &COMPONENT_CLASSES,
    &EVENT_CLASSES,
    &COMPONENTS,
    &CASES,
    &SENSORS,
    &STAFF,
    &CAMERAS,
];

/// Which rows of a table a read wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    /// Those whose column equals the value (text or integer).
    Eq(&'static str, Val),
    /// Those written by the import of this sequence number (see `Store::import`).
    Imported(i64),
}

/// The error for a filter on a value kind that filters do not support.
pub fn unsupported_filter(table: &'static Table, column: &'static str) -> StoreError {
    StoreError::Value { table: table.name, column, detail: "filters take text or integer values".into() }
}

/// The extent of the geometries of `rows`, `[west, south, east, north]`; None without any.
pub fn rows_bbox(rows: &[Vec<Val>]) -> Option<[f64; 4]> {
    use geo::BoundingRect;
    rows.iter()
        .flatten()
        .filter_map(|v| if let Val::Geom(g) = v { g.bounding_rect() } else { None })
        .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
        .reduce(crate::geo::bbox_union)
}

/// The key (first column) of every row of `table`, as text.
pub fn keys_sql(table: &Table) -> String {
    format!("SELECT CAST({} AS TEXT) FROM {}", table.cols[0].0, table.name)
}

/// The natural key that orders a table's rows stably.
pub fn order_column(table: &Table) -> &'static str {
    match table.name {
        "responsibilities" => "dept_code, scope, target",
        "case_steps" => "case_id, seq",
        "plans" => "code, version",
        _ => table.cols[0].0,
    }
}
