//! How each model record maps to a row of [`Val`]s in its table's column order, and back.

use super::*;
use crate::model::*;
use crate::store::StoreError;

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
            ot(&self.assignee),
            Val::Time(self.assigned_at),
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
            assignee: c.opt_text()?,
            assigned_at: c.time()?,
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
        vec![
            t(&self.hash),
            t(&self.role),
            ot(&self.dept_code),
            ot(&self.label),
            Val::Time(Some(self.created_at)),
            ot(&self.area_code),
            ot(&self.sensors_prefix),
            Val::Time(self.expires_at),
            ot(&self.staff_code),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(ApiToken {
            hash: c.text()?,
            role: c.text()?,
            dept_code: c.opt_text()?,
            label: c.opt_text()?,
            created_at: c.required_time()?,
            area_code: c.opt_text()?,
            sensors_prefix: c.opt_text()?,
            expires_at: c.time()?,
            staff_code: c.opt_text()?,
        })
    }
}

impl Row for Media {
    fn table() -> &'static Table {
        &CASE_MEDIA
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            t(&self.id),
            Val::Int(self.case_id),
            Val::Text(Some(self.step.as_str().into())),
            t(&self.content_type),
            Val::Int(self.bytes),
            Val::Int(self.width),
            Val::Int(self.height),
            Val::Time(self.taken_at),
            Val::Json(self.place.map(|p| serde_json::to_value(p).expect("a place serialises"))),
            t(&self.object),
            t(&self.thumbnail),
            t(&self.actor),
            t(&self.role),
            Val::Time(Some(self.uploaded_at)),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        let id = c.text()?;
        let case_id = c.int()?;
        let step = c.text()?;
        let step = MediaStep::parse(&step).ok_or_else(|| c.bad(2, "a photo step"))?;
        Ok(Media {
            id,
            case_id,
            step,
            content_type: c.text()?,
            bytes: c.int()?,
            width: c.int()?,
            height: c.int()?,
            taken_at: c.time()?,
            place: c.json()?.map(serde_json::from_value).transpose().map_err(|_| c.bad(8, "a place"))?,
            object: c.text()?,
            thumbnail: c.text()?,
            actor: c.text()?,
            role: c.text()?,
            uploaded_at: c.required_time()?,
        })
    }
}

impl Row for TokenRevocation {
    fn table() -> &'static Table {
        &TOKEN_REVOCATIONS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![t(&self.hash), Val::Time(Some(self.revoked_at))]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(TokenRevocation { hash: c.text()?, revoked_at: c.required_time()? })
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

impl Row for Staff {
    fn table() -> &'static Table {
        &STAFF
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            t(&self.code),
            t(&self.name),
            Val::Text(Some(self.role.as_str().into())),
            ot(&self.dept_code),
            ot(&self.community_code),
            Val::Json((!self.grids.is_empty()).then(|| serde_json::json!(self.grids.as_ref()))),
            Val::Geom(self.geom.into()),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        let code = c.text()?;
        let name = c.text()?;
        let role = c.text()?;
        let role = StaffRole::parse(&role).ok_or_else(|| c.bad(2, "a staff role"))?;
        let dept_code = c.opt_text()?;
        let community_code = c.opt_text()?;
        let grids = match c.json()? {
            None => Vec::new(),
            Some(v) => serde_json::from_value::<Vec<Str>>(v).map_err(|_| c.bad(5, "a JSON array of grid codes"))?,
        };
        Ok(Staff {
            code,
            name,
            role,
            dept_code,
            community_code,
            grids: grids.into(),
            geom: c.point()?,
            last_seen: None,
            on_duty: false,
            grid_code: None,
        })
    }
}

impl Row for Camera {
    fn table() -> &'static Table {
        &CAMERAS
    }
    fn to_row(&self) -> Vec<Val> {
        vec![
            t(&self.code),
            t(&self.name),
            ot(&self.stream_url),
            self.direction.map_or(Val::Real(f64::NAN), Val::Real),
            ot(&self.grid_code),
            Val::Geom(self.geom.into()),
        ]
    }
    fn from_row(row: Vec<Val>) -> Result<Self, StoreError> {
        let mut c = Cells::new(Self::table(), row);
        Ok(Camera {
            code: c.text()?,
            name: c.text()?,
            stream_url: c.opt_text()?,
            direction: Some(c.real()?).filter(|d| d.is_finite()),
            grid_code: c.opt_text()?,
            geom: c.point()?,
        })
    }
}
