//! The table layout shared by both stores: which columns each table has and how a model record
//! maps to a row of neutral values and back. Backends bind these values in their own dialect.

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
    cols: &[("hash", Text), ("role", Text), ("dept_code", Text), ("label", Text), ("created_at", Time)],
};
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

/// The keys each import wrote (see `Store::import`).
pub static IMPORT_KEYS: Table = Table { name: "import_keys", cols: &[("seq", Int), ("key", Text)] };

/// Every table in dependency order (parents before children), as written by `write_city`.
pub static ALL: [&Table; 11] = [
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
];

/// A model type that is stored as rows of one table.
pub trait Row: Sized {
    fn table() -> &'static Table;
    fn to_row(&self) -> Vec<Val>;
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError>;
}

/// Reads the cells of a row in column order, with typed accessors that name the column on error.
struct Cells {
    table: &'static Table,
    it: std::iter::Enumerate<std::vec::IntoIter<Val>>,
}

impl Cells {
    fn new(table: &'static Table, row: Vec<Val>) -> Self {
        Cells { table, it: row.into_iter().enumerate() }
    }
    fn bad(&self, i: usize, what: &str) -> StoreError {
        StoreError::Value { table: self.table.name, column: self.table.cols[i].0, detail: format!("expected {what}") }
    }
    fn next(&mut self) -> (usize, Val) {
        // Backends build rows from the same column list, so a short row is a programming error.
        self.it.next().expect("row shorter than its table's column list")
    }
    fn opt_text(&mut self) -> Result<Option<Str>, StoreError> {
        match self.next() {
            (_, Val::Text(t)) => Ok(t),
            (i, _) => Err(self.bad(i, "text")),
        }
    }
    /// A case status, or none in a nullable column.
    fn opt_status(&mut self) -> Result<Option<Status>, StoreError> {
        match self.next() {
            (_, Val::Text(None)) => Ok(None),
            (i, Val::Text(Some(t))) => Status::parse(&t).map(Some).ok_or_else(|| self.bad(i, "a case status")),
            (i, _) => Err(self.bad(i, "text")),
        }
    }
    fn status(&mut self) -> Result<Status, StoreError> {
        let i = self.table.cols.len() - self.it.len();
        self.opt_status()?.ok_or_else(|| self.bad(i, "a case status"))
    }
    fn text(&mut self) -> Result<Str, StoreError> {
        match self.next() {
            (_, Val::Text(Some(t))) => Ok(t),
            (i, _) => Err(self.bad(i, "non-null text")),
        }
    }
    fn real(&mut self) -> Result<f64, StoreError> {
        match self.next() {
            (_, Val::Real(v)) => Ok(v),
            (i, _) => Err(self.bad(i, "a number")),
        }
    }
    fn int(&mut self) -> Result<i64, StoreError> {
        match self.next() {
            (_, Val::Int(v)) => Ok(v),
            (i, _) => Err(self.bad(i, "an integer")),
        }
    }
    fn date(&mut self) -> Result<Option<NaiveDate>, StoreError> {
        match self.next() {
            (_, Val::Date(v)) => Ok(v),
            (i, _) => Err(self.bad(i, "a date")),
        }
    }
    fn time(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.next() {
            (_, Val::Time(v)) => Ok(v),
            (i, _) => Err(self.bad(i, "a timestamp")),
        }
    }
    fn required_time(&mut self) -> Result<DateTime<Utc>, StoreError> {
        match self.next() {
            (_, Val::Time(Some(v))) => Ok(v),
            (i, _) => Err(self.bad(i, "a non-null timestamp")),
        }
    }
    fn json(&mut self) -> Result<Option<serde_json::Value>, StoreError> {
        match self.next() {
            (_, Val::Json(v)) => Ok(v),
            (i, _) => Err(self.bad(i, "JSON")),
        }
    }
    fn geom(&mut self) -> Result<Geometry<f64>, StoreError> {
        match self.next() {
            (_, Val::Geom(g)) => Ok(g),
            (i, _) => Err(self.bad(i, "a geometry")),
        }
    }
    fn multipolygon(&mut self) -> Result<geo::MultiPolygon<f64>, StoreError> {
        match self.geom()? {
            Geometry::MultiPolygon(m) => Ok(m),
            Geometry::Polygon(p) => Ok(geo::MultiPolygon(vec![p])),
            _ => Err(StoreError::Geometry { table: self.table.name, detail: "expected a (multi)polygon".into() }),
        }
    }
    fn polygon(&mut self) -> Result<geo::Polygon<f64>, StoreError> {
        match self.geom()? {
            Geometry::Polygon(p) => Ok(p),
            Geometry::MultiPolygon(mut m) if m.0.len() == 1 => Ok(m.0.remove(0)),
            _ => Err(StoreError::Geometry { table: self.table.name, detail: "expected a polygon".into() }),
        }
    }
    fn point(&mut self) -> Result<geo::Point<f64>, StoreError> {
        match self.geom()? {
            Geometry::Point(p) => Ok(p),
            _ => Err(StoreError::Geometry { table: self.table.name, detail: "expected a point".into() }),
        }
    }
}

/// A name from one of the model's enums.
fn name(s: Status) -> Val {
    Val::Text(Some(s.as_str().into()))
}

fn t(s: &Str) -> Val {
    Val::Text(Some(s.clone()))
}
fn ot(s: &Option<Str>) -> Val {
    Val::Text(s.clone())
}

impl Row for District {
    fn table() -> &'static Table {
        &DISTRICTS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.code), t(&self.name), Val::Geom(self.geom.clone().into())]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(District { code: c.text()?, name: c.text()?, geom: c.multipolygon()? })
    }
}

impl Row for Street {
    fn table() -> &'static Table {
        &STREETS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.code), t(&self.name), t(&self.district_code), Val::Geom(self.geom.clone().into())]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Street { code: c.text()?, name: c.text()?, district_code: c.text()?, geom: c.multipolygon()? })
    }
}

impl Row for Community {
    fn table() -> &'static Table {
        &COMMUNITIES
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.code), t(&self.name), t(&self.street_code), Val::Geom(self.geom.clone().into())]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Community { code: c.text()?, name: c.text()?, street_code: c.text()?, geom: c.multipolygon()? })
    }
}

impl Row for Grid {
    fn table() -> &'static Table {
        &GRIDS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            t(&self.code),
            t(&self.name),
            t(&self.community_code),
            Val::Real(self.area_m2),
            Val::Geom(self.geom.clone().into()),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Grid { code: c.text()?, name: c.text()?, community_code: c.text()?, area_m2: c.real()?, geom: c.polygon()? })
    }
}

impl Row for Department {
    fn table() -> &'static Table {
        &DEPARTMENTS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.code), t(&self.name), t(&self.kind), ot(&self.region_code)]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Department { code: c.text()?, name: c.text()?, kind: c.text()?, region_code: c.opt_text()? })
    }
}

impl Row for Responsibility {
    fn table() -> &'static Table {
        &RESPONSIBILITIES
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.dept_code), t(&self.scope), t(&self.target), t(&self.role)]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Responsibility { dept_code: c.text()?, scope: c.text()?, target: c.text()?, role: c.text()? })
    }
}

impl Row for ComponentClass {
    fn table() -> &'static Table {
        &COMPONENT_CLASSES
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.code), t(&self.major), t(&self.name), t(&self.geom_type), ot(&self.competent_dept)]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(ComponentClass {
            code: c.text()?,
            major: c.text()?,
            name: c.text()?,
            geom_type: c.text()?,
            competent_dept: c.opt_text()?,
        })
    }
}

impl Row for EventClass {
    fn table() -> &'static Table {
        &EVENT_CLASSES
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.code), t(&self.major), t(&self.name), ot(&self.default_dept)]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(EventClass { code: c.text()?, major: c.text()?, name: c.text()?, default_dept: c.opt_text()? })
    }
}

impl Row for Component {
    fn table() -> &'static Table {
        &COMPONENTS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            t(&self.code),
            t(&self.class_code),
            t(&self.name),
            t(&self.status),
            ot(&self.competent_dept),
            ot(&self.owner_dept),
            ot(&self.maint_dept),
            ot(&self.grid_code),
            Val::Date(self.survey_date),
            Val::Date(self.change_date),
            t(&self.source),
            Val::Geom(self.geom.to_geometry()),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Component {
            code: c.text()?,
            class_code: c.text()?,
            name: c.text()?,
            status: c.text()?,
            competent_dept: c.opt_text()?,
            owner_dept: c.opt_text()?,
            maint_dept: c.opt_text()?,
            grid_code: c.opt_text()?,
            survey_date: c.date()?,
            change_date: c.date()?,
            source: c.text()?,
            geom: c.geom()?.into(),
        })
    }
}

impl Row for Case {
    fn table() -> &'static Table {
        &CASES
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            Val::Int(self.id),
            t(&self.class_code),
            t(&self.kind),
            ot(&self.component_code),
            Val::Text(Some(self.description.as_str().into())),
            t(&self.source),
            name(self.status),
            t(&self.urgency),
            ot(&self.grid_code),
            Val::Time(Some(self.reported_at)),
            Val::Time(self.closed_at),
            Val::Time(self.deadline_at),
            ot(&self.dept_code),
            Val::Int(self.version as i64),
            Val::Geom(self.geom.into()),
            Val::Time(self.milestones.filed_at),
            Val::Time(self.milestones.dispatch_due_at),
            Val::Time(self.milestones.dispatched_at),
            Val::Time(self.milestones.handled_at),
            Val::Time(self.milestones.voided_at),
            Val::Time(self.milestones.warn_at),
            Val::Int(self.milestones.reworks as i64),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Case {
            id: c.int()?,
            class_code: c.text()?,
            kind: c.text()?,
            component_code: c.opt_text()?,
            description: c.text()?.into(),
            source: c.text()?,
            status: c.status()?,
            urgency: c.text()?,
            grid_code: c.opt_text()?,
            reported_at: c.required_time()?,
            closed_at: c.time()?,
            deadline_at: c.time()?,
            dept_code: c.opt_text()?,
            version: c.int()? as i32,
            geom: c.point()?,
            milestones: Milestones {
                filed_at: c.time()?,
                dispatch_due_at: c.time()?,
                dispatched_at: c.time()?,
                handled_at: c.time()?,
                voided_at: c.time()?,
                warn_at: c.time()?,
                reworks: c.int()? as i32,
            },
            light: None,
        })
    }
}

impl Row for CaseStep {
    fn table() -> &'static Table {
        &CASE_STEPS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            Val::Int(self.case_id),
            Val::Int(self.seq as i64),
            t(&self.action),
            t(&self.actor),
            t(&self.role),
            ot(&self.dept_code),
            Val::Text(self.status_from.map(|s| s.as_str().into())),
            name(self.status_to),
            Val::Time(Some(self.at)),
            Val::Text(self.note.as_deref().map(Into::into)),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(CaseStep {
            case_id: c.int()?,
            seq: c.int()? as i32,
            action: c.text()?,
            actor: c.text()?,
            role: c.text()?,
            dept_code: c.opt_text()?,
            status_from: c.opt_status()?,
            status_to: c.status()?,
            at: c.required_time()?,
            note: c.opt_text()?.map(Into::into),
        })
    }
}

impl Row for ApiToken {
    fn table() -> &'static Table {
        &API_TOKENS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.hash), t(&self.role), ot(&self.dept_code), ot(&self.label), Val::Time(Some(self.created_at))]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(ApiToken {
            hash: c.text()?,
            role: c.text()?,
            dept_code: c.opt_text()?,
            label: c.opt_text()?,
            created_at: c.required_time()?,
        })
    }
}

impl Row for Sensor {
    fn table() -> &'static Table {
        &SENSORS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            t(&self.code),
            t(&self.kind),
            t(&self.name),
            ot(&self.component_code),
            ot(&self.grid_code),
            Val::Json(self.thresholds.clone()),
            Val::Geom(self.geom.into()),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Sensor {
            code: c.text()?,
            kind: c.text()?,
            name: c.text()?,
            component_code: c.opt_text()?,
            grid_code: c.opt_text()?,
            thresholds: c.json()?,
            geom: c.point()?,
            live: Default::default(),
        })
    }
}

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

/// Writes a new case under the id the backend allocated, and its first history step.
pub async fn write_new_case(
    io: &mut (dyn RowWriter + Send),
    id: i64,
    case: &Case,
    first: &CaseStep,
) -> Result<(), StoreError> {
    let case = Case { id, ..case.clone() };
    let first = CaseStep { case_id: id, ..first.clone() };
    io.insert_rows(&CASES, &[case.to_row()]).await?;
    io.insert_rows(&CASE_STEPS, &[first.to_row()]).await
}

/// How many imports keep their keys for running servers to pick up.
pub const IMPORTS_KEPT: i64 = 20;

/// The statement recording an import; the same text in both dialects.
pub const IMPORT_SQL: &str = "INSERT INTO imports (collection, features, source) VALUES ($1, $2, $3) RETURNING seq";
/// Forgets the keys of all but the latest imports (`$1`: the oldest sequence number to drop).
pub const PRUNE_IMPORT_KEYS_SQL: &str = "DELETE FROM import_keys WHERE seq <= $1";

/// The extent of the geometries of `rows`, `[west, south, east, north]`; None without any.
pub fn rows_bbox(rows: &[Vec<Val>]) -> Option<[f64; 4]> {
    use geo::BoundingRect;
    rows.iter()
        .flatten()
        .filter_map(|v| if let Val::Geom(g) = v { g.bounding_rect() } else { None })
        .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
        .reduce(|a, b| [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])])
}

/// The key (first column) of every row of `table`, as text.
pub fn keys_sql(table: &Table) -> String {
    format!("SELECT CAST({} AS TEXT) FROM {}", table.cols[0].0, table.name)
}

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
    progress: super::Progress<'_>,
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
    for chunk in rows.chunks(super::batch_rows(table)) {
        io.insert_rows(table, chunk).await?;
        done += chunk.len();
        progress(table.name, done);
    }
    if table.name == CASES.name {
        let steps: Vec<Vec<Val>> = rows
            .iter()
            .map(|r| Case::from_row(r.clone()).map(|c| import_step(&c, source).to_row()))
            .collect::<Result<_, _>>()?;
        for chunk in steps.chunks(super::batch_rows(&CASE_STEPS)) {
            io.insert_rows(&CASE_STEPS, chunk).await?;
        }
    }
    let key_rows: Vec<Vec<Val>> = keys.into_iter().map(|k| vec![Val::Int(seq), Val::Text(Some(k.into()))]).collect();
    for chunk in key_rows.chunks(super::batch_rows(&IMPORT_KEYS)) {
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
    progress: super::Progress<'_>,
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
    Ok(())
}

async fn write_table<T: Row + Sync>(
    io: &mut (dyn RowWriter + Send),
    items: &[T],
    progress: super::Progress<'_>,
) -> Result<(), StoreError> {
    let mut done = 0;
    for chunk in items.chunks(super::batch_rows(T::table())) {
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
    progress: super::Progress<'_>,
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
    })
}

async fn load_table<T: Row + Send>(
    io: &mut (dyn RowReader + Send),
    progress: super::Progress<'_>,
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

/// The natural key that orders a table's rows stably.
pub fn order_column(table: &Table) -> &'static str {
    match table.name {
        "responsibilities" => "dept_code, scope, target",
        "case_steps" => "case_id, seq",
        _ => table.cols[0].0,
    }
}
