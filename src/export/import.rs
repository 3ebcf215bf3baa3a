//! Importing a collection from a source file: every feature mapped to the collection's columns,
//! validated (geometry, codes, parents, classes, duplicates, the grid tiling rule), given its
//! place in the hierarchy by code and by geometry, and written in one transaction, or nothing
//! written at all when anything is rejected (unless `skip_invalid`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use geo::{Geometry, InteriorPoint, MultiPolygon, Point, Polygon, Validation};

use super::ExportError;
use super::fields::resolve;
use super::read::{Source, SourceFeature, has_replacement};
use super::topology;
use crate::index::{Layer, Record};
use crate::model::*;
use crate::store::schema::{self, Row, Table, Val};
use crate::store::{Store, select};

/// Where a unit grid's (or community's, street's) parent comes from when code and geometry
/// disagree; both are compared and every disagreement is reported either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hierarchy {
    /// The code prefix (GB/T 30428.1 codes nest: grid = community + serial).
    #[default]
    Code,
    /// The parent polygon holding the feature's interior point.
    Geometry,
}

/// The rule edition event classes are coded in: the 2007 rule swaps majors 04 and 05.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Edition {
    #[default]
    E2013,
    E2007,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub read: super::read::ReadOptions,
    /// `column=source field` overrides of the default field mapping.
    pub fields: Vec<(String, String)>,
    pub skip_invalid: bool,
    pub hierarchy: Hierarchy,
    /// Overlaps, boundary crossings and gaps smaller than this many m² are survey noise.
    pub tolerance_m2: f64,
    pub edition: Edition,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            read: Default::default(),
            fields: Vec::new(),
            skip_invalid: false,
            hierarchy: Hierarchy::Code,
            tolerance_m2: 1.0,
            edition: Edition::E2013,
        }
    }
}

/// One rejected feature (or, for a gap, community) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub feature: String,
    pub reason: String,
}

/// What an import found and did.
#[derive(Debug)]
pub struct Report {
    pub collection: Collection,
    pub crs: String,
    pub read: usize,
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub warnings: Vec<String>,
    /// The import's sequence number once written; `None` when nothing was written.
    pub seq: Option<i64>,
}

impl Report {
    /// The report as printed by `onemap import`: a summary, then one line per rejection and warning.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: read {} features (CRS {}), {} accepted, {} rejected; {}\n",
            self.collection,
            self.read,
            self.crs,
            self.accepted,
            self.rejected.len(),
            match self.seq {
                Some(seq) => format!("imported {} (import #{seq})", self.accepted),
                None => "nothing imported".to_string(),
            }
        );
        for r in &self.rejected {
            out.push_str(&format!("rejected\t{}\t{}\n", r.feature, r.reason));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning\t{w}\n"));
        }
        out
    }
}

/// What an import checks against: the parents and dictionaries already stored, and the keys
/// the collection already has.
pub struct Context {
    pub districts: Layer<District>,
    pub streets: Layer<Street>,
    pub communities: Layer<Community>,
    pub grids: Layer<Grid>,
    pub component_classes: HashMap<String, ComponentClass>,
    pub event_classes: HashMap<String, EventClass>,
    /// Whether the store holds the class dictionaries (when not, the national ones are used
    /// and written along).
    pub classes_stored: bool,
    pub components: HashSet<String>,
    /// Department codes (for staff).
    pub departments: HashSet<String>,
    pub existing: HashSet<String>,
}

impl Context {
    /// Loads what importing `collection` needs from the store, and nothing more.
    pub async fn load(store: &dyn Store, collection: Collection) -> Result<Context, ExportError> {
        use Collection::*;
        use schema::Filter::All;
        let needs = |c: &[Collection]| c.contains(&collection);
        let districts = if needs(&[Streets, Components]) { select(store, All).await? } else { Vec::new() };
        let streets = if needs(&[Communities]) { select(store, All).await? } else { Vec::new() };
        let communities = if needs(&[Grids, Staff]) { select(store, All).await? } else { Vec::new() };
        let grids = if needs(&[Grids, Components, Cases, Sensors, Staff, Cameras]) {
            select(store, All).await?
        } else {
            Vec::new()
        };
        let departments = if needs(&[Staff]) {
            store.keys(&schema::DEPARTMENTS).await?.into_iter().collect()
        } else {
            HashSet::new()
        };
        let mut component_classes: Vec<ComponentClass> = select(store, All).await?;
        let mut event_classes: Vec<EventClass> = select(store, All).await?;
        let classes_stored = !component_classes.is_empty();
        if !classes_stored {
            component_classes = crate::catalog::component_classes();
            event_classes = crate::catalog::event_classes();
        }
        let components = if needs(&[Cases, Sensors]) {
            store.keys(&schema::COMPONENTS).await?.into_iter().collect()
        } else {
            HashSet::new()
        };
        let existing = match collection {
            Cases | Grids => HashSet::new(),
            c => store.keys(table_of(c)).await?.into_iter().collect(),
        };
        Ok(Context {
            existing: if collection == Grids {
                grids.iter().map(|g: &Grid| g.code.to_string()).collect()
            } else {
                existing
            },
            districts: Layer::bulk(districts),
            streets: Layer::bulk(streets),
            communities: Layer::bulk(communities),
            grids: Layer::bulk(grids),
            component_classes: component_classes.into_iter().map(|c| (c.code.to_string(), c)).collect(),
            event_classes: event_classes.into_iter().map(|c| (c.code.to_string(), c)).collect(),
            classes_stored,
            components,
            departments,
        })
    }
}

/// The store table of a collection.
pub fn table_of(collection: Collection) -> &'static Table {
    super::with_model!(collection, |T| T::table())
}

/// Properties the store derives rather than reads from a file: ids, deadlines, lights and
/// versions of cases, grid areas, the live state of sensors.
const DERIVED: &[&str] = &[
    "id",
    "deadline_at",
    "light",
    "version",
    "area_m2",
    "unit",
    "value",
    "read_at",
    "level",
    "stale",
    "on_duty",
    "last_seen",
];

/// The columns an import fills from source fields: the collection's properties but the derived.
fn mapped_columns(collection: Collection) -> Vec<&'static str> {
    super::with_model!(collection, |T| <T as Record>::PROPERTIES
        .iter()
        .copied()
        .filter(|p| !DERIVED.contains(p))
        .collect())
}

/// Validates every feature of `source` as a record of `collection`: the rows to write (in
/// file order) and the report so far.
pub fn validate(
    collection: Collection,
    source: &Source,
    ctx: &Context,
    opts: &ImportOptions,
) -> (Vec<Vec<Val>>, Report) {
    let mut report = Report {
        collection,
        crs: source.crs.clone(),
        read: source.features.len(),
        warnings: source.warnings.clone(),
        accepted: 0,
        rejected: Vec::new(),
        seq: None,
    };
    let columns = mapped_columns(collection);
    let (map, problems) = resolve(&columns, &source.fields, &opts.fields);
    for p in problems {
        report.rejected.push(Rejection { feature: "(options)".into(), reason: p });
    }
    let mut v = Validator { ctx, opts, map, seen: HashSet::new(), warnings: Vec::new() };
    let mut rows: Vec<(usize, Vec<Val>)> = Vec::new();
    for (i, f) in source.features.iter().enumerate() {
        match v.feature(collection, f) {
            Ok(row) => rows.push((i, row)),
            Err(reason) => report.rejected.push(Rejection { feature: v.label(f), reason }),
        }
    }
    if collection == Collection::Grids {
        let grids: Vec<Grid> =
            rows.iter().map(|(_, r)| Grid::from_row(r.clone()).expect("rows built here decode")).collect();
        let refs: Vec<&Grid> = grids.iter().collect();
        let communities: HashMap<&str, &Community> = ctx.communities.iter().map(|c| (c.code.as_str(), c)).collect();
        let stored: Vec<Grid> = ctx.grids.iter().cloned().collect();
        let mut bad = HashSet::new();
        for (i, reason) in topology::check(&refs, &stored, &communities, opts.tolerance_m2) {
            match i {
                Some(i) => {
                    bad.insert(i);
                    let f = &source.features[rows[i].0];
                    report.rejected.push(Rejection { feature: v.label(f), reason });
                }
                None => report.rejected.push(Rejection { feature: "(community)".into(), reason }),
            }
        }
        rows = rows.into_iter().enumerate().filter(|(k, _)| !bad.contains(k)).map(|(_, r)| r).collect();
    }
    report.warnings.append(&mut v.warnings);
    report.accepted = rows.len();
    (rows.into_iter().map(|(_, r)| r).collect(), report)
}

/// Reads, validates and (when nothing is rejected, or with `skip_invalid`) writes an import.
pub async fn run(
    store: &dyn Store,
    collection: Collection,
    path: &std::path::Path,
    opts: &ImportOptions,
    progress: &(dyn Fn(&str, u64, u64) + Send + Sync),
) -> Result<Report, ExportError> {
    let (p, read_opts) = (path.to_path_buf(), opts.read.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    // GDAL blocks: read on a blocking thread, reporting progress back here.
    let reading = tokio::task::spawn_blocking(move || {
        super::read::read(&p, &read_opts, &|d, t| {
            let _ = tx.send((d, t));
        })
    });
    while let Some((d, t)) = rx.recv().await {
        progress("reading", d, t);
    }
    let source = reading.await.map_err(|e| ExportError::Source(e.to_string()))??;
    let ctx = Context::load(store, collection).await?;
    let n = source.features.len() as u64;
    progress("validating", 0, n);
    let o = opts.clone();
    let (rows, mut report, ctx) = tokio::task::spawn_blocking(move || {
        let (rows, report) = validate(collection, &source, &ctx, &o);
        (rows, report, ctx)
    })
    .await
    .map_err(|e| ExportError::Source(e.to_string()))?;
    progress("validating", n, n);
    if !report.rejected.is_empty() && !opts.skip_invalid {
        return Ok(report);
    }
    if rows.is_empty() {
        return Ok(report);
    }
    if !ctx.classes_stored && matches!(collection, Collection::Components | Collection::Cases) {
        let classes: Vec<ComponentClass> = ctx.component_classes.values().cloned().collect();
        let events: Vec<EventClass> = ctx.event_classes.values().cloned().collect();
        crate::store::insert(store, &classes, Vec::new()).await?;
        crate::store::insert(store, &events, Vec::new()).await?;
        report.warnings.push("the store had no class dictionaries: wrote the national ones (GB/T 30428.2)".into());
    }
    let total = rows.len() as u64;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_string();
    let seq = store.import(table_of(collection), rows, &name, &|_, n| progress("writing", n as u64, total)).await?;
    report.seq = Some(seq);
    Ok(report)
}

struct Validator<'a> {
    ctx: &'a Context,
    opts: &'a ImportOptions,
    map: HashMap<&'static str, usize>,
    seen: HashSet<String>,
    warnings: Vec<String>,
}

type Check<T> = Result<T, String>;

impl Validator<'_> {
    /// `feature 12 (code 320508...)` for the report.
    fn label(&self, f: &SourceFeature) -> String {
        match self.get(f, "code") {
            Some(code) => format!("feature {} (code {code})", f.fid),
            None => format!("feature {}", f.fid),
        }
    }

    /// The trimmed, non-empty text of column `col`'s source field.
    fn get<'f>(&self, f: &'f SourceFeature, col: &str) -> Option<&'f str> {
        let i = *self.map.get(col)?;
        f.values.get(i)?.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    fn text(&self, f: &SourceFeature, col: &str) -> Option<Str> {
        self.get(f, col).map(Str::from)
    }

    fn required(&self, f: &SourceFeature, col: &str) -> Check<Str> {
        self.text(f, col).ok_or_else(|| format!("no {col} (map a field with --field {col}=FIELD)"))
    }

    fn feature(&mut self, collection: Collection, f: &SourceFeature) -> Check<Vec<Val>> {
        if has_replacement(f) {
            let field = f.values.iter().position(|v| v.as_deref().is_some_and(|v| v.contains('\u{FFFD}')));
            return Err(format!(
                "text in field {} is not valid in the file's encoding (GBK without a .cpg, or a wrong .cpg?): give --encoding",
                field.map(|i| i.to_string()).unwrap_or_default()
            ));
        }
        let geom = f.geom.clone().map_err(|e| format!("geometry: {e}"))?;
        if let Some(problem) = geom.validation_errors().into_iter().next() {
            return Err(format!("invalid geometry: {problem}"));
        }
        let row = match collection {
            Collection::Districts => self.district(f, geom)?.to_row(),
            Collection::Streets => self.street(f, geom)?.to_row(),
            Collection::Communities => self.community(f, geom)?.to_row(),
            Collection::Grids => self.grid(f, geom)?.to_row(),
            Collection::Components => self.component(f, geom)?.to_row(),
            Collection::Cases => return self.case(f, geom).map(|c| c.to_row()),
            Collection::Staff => self.staff(f, geom)?.to_row(),
            Collection::Cameras => self.camera(f, geom)?.to_row(),
            // Only feature collections reach here (`onemap import plans` reads documents).
            Collection::Sensors
            | Collection::Alarms
            | Collection::Tokens
            | Collection::Overlays
            | Collection::Media
            | Collection::Plans
            | Collection::Incidents => self.sensor(f, geom)?.to_row(),
        };
        // Duplicates last, so a feature rejected for another reason does not claim its code.
        let Val::Text(Some(code)) = &row[0] else { unreachable!("keys are text") };
        if self.ctx.existing.contains(code.as_str()) {
            return Err(format!("duplicate: {code} is already stored"));
        }
        if !self.seen.insert(code.to_string()) {
            return Err(format!("duplicate: {code} appears earlier in the file"));
        }
        Ok(row)
    }

    fn code(&self, f: &SourceFeature, lens: &[usize], what: &str) -> Check<Str> {
        let code = self.required(f, "code")?;
        if !lens.contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            let lens: Vec<String> = lens.iter().map(|l| l.to_string()).collect();
            return Err(format!("bad code {code:?}: a {what} code is {} digits", lens.join(" or ")));
        }
        Ok(code)
    }

    /// The parent by code prefix and by geometry, compared; the chosen one must exist.
    fn parent<P: Record>(
        &mut self,
        code: &str,
        prefix_len: usize,
        field: Option<Str>,
        point: Option<Point<f64>>,
        parents: &Layer<P>,
        what: &str,
    ) -> Check<Str> {
        let by_code: Str = field.clone().unwrap_or_else(|| code[..prefix_len].into());
        if field.as_deref().is_some_and(|p| p != &code[..prefix_len]) {
            self.warnings
                .push(format!("{code}: {what} field says {by_code} but the code says {}", &code[..prefix_len]));
        }
        let by_geom = point.and_then(|p| parents.at_point(p.x(), p.y())).map(|p| p.key());
        match &by_geom {
            Some(g) if *g != by_code => {
                self.warnings.push(format!("{code}: {what} by code is {by_code}, by geometry {g}"));
            }
            None if !parents.is_empty() => {
                self.warnings.push(format!("{code}: lies in no stored {what}"));
            }
            _ => {}
        }
        let chosen = match (self.opts.hierarchy, by_geom) {
            (Hierarchy::Geometry, Some(g)) => g,
            _ => by_code,
        };
        if parents.get(&chosen).is_none() {
            return Err(format!("unknown {what} {chosen}: import the {what} layer first"));
        }
        Ok(chosen)
    }

    fn name_or(&self, f: &SourceFeature, fallback: &str) -> Str {
        self.text(f, "name").unwrap_or_else(|| fallback.into())
    }

    /// An areal geometry as a multipolygon, rings oriented the one way (outer counter-clockwise).
    fn areal(geom: Geometry<f64>) -> Check<MultiPolygon<f64>> {
        use geo::orient::{Direction, Orient};
        Self::areal_any(geom).map(|m| m.orient(Direction::Default))
    }

    fn areal_any(geom: Geometry<f64>) -> Check<MultiPolygon<f64>> {
        match geom {
            Geometry::Polygon(p) => Ok(MultiPolygon::new(vec![p])),
            // CAD draws areas as closed polylines.
            Geometry::LineString(l) if l.is_closed() && l.0.len() >= 4 => {
                Ok(MultiPolygon::new(vec![Polygon::new(l, vec![])]))
            }
            Geometry::MultiPolygon(m) => Ok(m),
            other => Err(format!("wrong geometry type {}: a polygon is required", type_name(&other))),
        }
    }

    fn district(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<District> {
        let code = self.code(f, &[6], "district")?;
        Ok(District { name: self.required(f, "name")?, code, geom: Self::areal(geom)? })
    }

    fn street(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Street> {
        let code = self.code(f, &[9], "street")?;
        let geom = Self::areal(geom)?;
        let ctx = self.ctx;
        let district_code =
            self.parent(&code, 6, self.text(f, "district_code"), geom.interior_point(), &ctx.districts, "district")?;
        Ok(Street { name: self.required(f, "name")?, code, district_code, geom })
    }

    fn community(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Community> {
        let code = self.code(f, &[12], "community")?;
        let geom = Self::areal(geom)?;
        let ctx = self.ctx;
        let street_code =
            self.parent(&code, 9, self.text(f, "street_code"), geom.interior_point(), &ctx.streets, "street")?;
        Ok(Community { name: self.required(f, "name")?, code, street_code, geom })
    }

    fn grid(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Grid> {
        let code = self.code(f, &[14, 15], "unit grid")?;
        let mut parts = Self::areal(geom)?.0;
        if parts.len() != 1 {
            return Err(format!("a unit grid is one closed polygon, not {} parts", parts.len()));
        }
        let poly = parts.pop().expect("one part");
        let ctx = self.ctx;
        let community_code = self.parent(
            &code,
            12,
            self.text(f, "community_code"),
            poly.interior_point(),
            &ctx.communities,
            "community",
        )?;
        let area_m2 = topology::area_m2(&MultiPolygon::new(vec![poly.clone()]));
        Ok(Grid { name: self.name_or(f, &code), code, community_code, area_m2, geom: poly })
    }

    /// The unit grid of a located feature: the field's (which must exist) or the one holding it.
    fn grid_of(&mut self, label: &str, field: Option<Str>, geom: &Geometry<f64>) -> Check<Option<Str>> {
        let at = geom.interior_point().and_then(|p| self.ctx.grids.at_point(p.x(), p.y())).map(|g| g.code.clone());
        match (field, at) {
            (Some(g), at) => {
                if self.ctx.grids.get(&g).is_none() && !self.ctx.grids.is_empty() {
                    return Err(format!("unknown unit grid {g}"));
                }
                if let Some(a) = at.filter(|a| *a != g) {
                    self.warnings.push(format!("{label}: unit grid field says {g}, the location is in {a}"));
                }
                Ok(Some(g))
            }
            (None, at) => Ok(at),
        }
    }

    fn component(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Component> {
        let code = self.code(f, &[16, 17], "component")?;
        let from_code = &code[6..10];
        let class_code = self.text(f, "class_code").unwrap_or_else(|| from_code.into());
        if class_code != from_code {
            return Err(format!("class {class_code} in the class field, but the code says {from_code}"));
        }
        let class = self
            .ctx
            .component_classes
            .get(class_code.as_str())
            .ok_or_else(|| format!("unknown component class {class_code}"))?;
        let kind = match &geom {
            Geometry::Point(_) => "point",
            Geometry::LineString(_) | Geometry::MultiLineString(_) => "line",
            Geometry::Polygon(_) | Geometry::MultiPolygon(_) => "polygon",
            other => return Err(format!("wrong geometry type {}", type_name(other))),
        };
        if class.geom_type != kind {
            return Err(format!("class {class_code} {} is a {}, not a {kind}", class.name, class.geom_type));
        }
        if self.ctx.districts.get(&code[..6]).is_none() && !self.ctx.districts.is_empty() {
            self.warnings.push(format!("{code}: county prefix {} is no stored district", &code[..6]));
        }
        let status = self.text(f, "status").map(component_status).transpose()?.unwrap_or_else(|| "完好".into());
        let grid_code = self.grid_of(&code, self.text(f, "grid_code"), &geom)?;
        Ok(Component {
            name: self.text(f, "name").unwrap_or_else(|| class.name.clone()),
            status,
            competent_dept: self.text(f, "competent_dept"),
            owner_dept: self.text(f, "owner_dept"),
            maint_dept: self.text(f, "maint_dept"),
            grid_code,
            survey_date: self.get(f, "survey_date").map(|d| parse_date("survey_date", d)).transpose()?,
            change_date: self.get(f, "change_date").map(|d| parse_date("change_date", d)).transpose()?,
            source: self.text(f, "source").unwrap_or_else(|| "import".into()),
            class_code,
            code,
            geom: geom.into(),
        })
    }

    fn case(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Case> {
        let Geometry::Point(point) = geom else {
            return Err(format!("wrong geometry type {}: a case is a point", type_name(&geom)));
        };
        let component_code = self.text(f, "component_code");
        let kind: Str = match self.get(f, "kind") {
            Some("component" | "部件") => "component".into(),
            Some("event" | "事件") => "event".into(),
            None if component_code.is_some() => "component".into(),
            None => "event".into(),
            Some(other) => return Err(format!("kind {other:?}: component (部件) or event (事件)")),
        };
        let mut class_code = self.required(f, "class_code")?;
        if kind == "event" && self.opts.edition == Edition::E2007 {
            class_code = swap_2007(&class_code);
        }
        let known = match kind.as_str() {
            "event" => self.ctx.event_classes.contains_key(class_code.as_str()),
            _ => self.ctx.component_classes.contains_key(class_code.as_str()),
        };
        if !known {
            return Err(format!("unknown {kind} class {class_code}"));
        }
        if let Some(c) = &component_code
            && !self.ctx.components.contains(c.as_str())
        {
            return Err(format!("unknown component {c}"));
        }
        let pick = |v: Option<&str>, options: &[&'static str], default: &'static str, what: &str| -> Check<Str> {
            match v {
                None => Ok(default.into()),
                Some(v) => options
                    .iter()
                    .find(|o| **o == v)
                    .map(|o| Str::from(*o))
                    .ok_or_else(|| format!("{what} {v:?}: one of {options:?}")),
            }
        };
        let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        let status = pick(self.get(f, "status"), &statuses, "reported", "status")?;
        let status = Status::parse(&status).expect("picked from the statuses");
        let urgency = pick(self.get(f, "urgency"), crate::cases::intake::URGENCIES, "normal", "urgency")?;
        let source = pick(self.get(f, "source"), crate::cases::intake::SOURCES, "supervisor", "source")?;
        let reported_at = parse_time("reported_at", self.get(f, "reported_at").ok_or("no reported_at")?)?;
        let closed_at = self.get(f, "closed_at").map(|t| parse_time("closed_at", t)).transpose()?;
        let label = format!("case at {:.6},{:.6}", point.x(), point.y());
        let grid_code = self.grid_of(&label, self.text(f, "grid_code"), &point.into())?;
        Ok(Case {
            id: 0,
            class_code,
            kind,
            component_code,
            description: self.get(f, "description").unwrap_or("").to_string(),
            source,
            status,
            urgency,
            grid_code,
            reported_at,
            closed_at,
            deadline_at: None,
            dept_code: self.text(f, "dept_code"),
            version: 1,
            geom: point,
            milestones: Default::default(),
            light: None,
            assignee: None,
            assigned_at: None,
        })
    }

    fn sensor(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Sensor> {
        let code = self.required(f, "code")?;
        let Geometry::Point(point) = geom else {
            return Err(format!("wrong geometry type {}: a sensor is a point", type_name(&geom)));
        };
        let kind = self.required(f, "kind")?;
        if crate::catalog::kind(&kind).is_none() {
            return Err(format!("unknown sensor kind {kind}"));
        }
        let component_code = self.text(f, "component_code");
        if let Some(c) = &component_code
            && !self.ctx.components.contains(c.as_str())
        {
            return Err(format!("unknown component {c}"));
        }
        let grid_code = self.grid_of(&code, self.text(f, "grid_code"), &point.into())?;
        Ok(Sensor {
            name: self.name_or(f, &code),
            code,
            kind,
            component_code,
            grid_code,
            thresholds: None,
            geom: point,
            live: Default::default(),
        })
    }
}

impl Validator<'_> {
    /// A video camera: `direction` in degrees clockwise from north (0 to 360), if known.
    fn camera(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Camera> {
        let code = self.required(f, "code")?;
        let Geometry::Point(point) = geom else {
            return Err(format!("wrong geometry type {}: a camera is a point", type_name(&geom)));
        };
        let direction = match self.text(f, "direction") {
            None => None,
            Some(d) => match d.trim().parse::<f64>() {
                Ok(v) if (0.0..=360.0).contains(&v) => Some(v),
                _ => return Err(format!("direction {d:?} must be degrees from 0 to 360")),
            },
        };
        let grid_code = self.grid_of(&code, self.text(f, "grid_code"), &point.into())?;
        Ok(Camera {
            name: self.name_or(f, &code),
            code,
            stream_url: self.text(f, "stream_url"),
            direction,
            grid_code,
            geom: point,
        })
    }

    /// A member of the field staff: `grids` lists the grids they patrol, separated by commas,
    /// semicolons or spaces; the point is where they start.
    fn staff(&mut self, f: &SourceFeature, geom: Geometry<f64>) -> Check<Staff> {
        let code = self.required(f, "code")?;
        let Geometry::Point(point) = geom else {
            return Err(format!("wrong geometry type {}: a staff member is a point", type_name(&geom)));
        };
        let role = self.required(f, "role")?;
        let role = StaffRole::parse(&role)
            .ok_or_else(|| format!("unknown staff role {role} (supervisor, collector, worker)"))?;
        let grids: Vec<Str> = self
            .get(f, "grids")
            .map(|g| g.split([',', ';', ' ']).filter(|s| !s.is_empty()).map(Str::from).collect())
            .unwrap_or_default();
        let staff = Staff {
            name: self.name_or(f, &code),
            code,
            role,
            dept_code: self.text(f, "dept_code"),
            community_code: self.text(f, "community_code"),
            grids: grids.into(),
            geom: point,
            last_seen: None,
            on_duty: false,
            grid_code: None,
        };
        let ctx = self.ctx;
        let community = |c: &str| ctx.communities.get(c).is_some();
        let grid = |g: &str| ctx.grids.get(g).is_some();
        let department = |d: &str| ctx.departments.contains(d);
        let known = crate::staff::Known { community: &community, grid: &grid, department: &department };
        crate::staff::check(&staff, &known).map_err(|e| e.to_string())?;
        Ok(staff)
    }
}

fn type_name(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::Line(_) | Geometry::LineString(_) => "LineString",
        Geometry::Polygon(_) => "Polygon",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::MultiPolygon(_) => "MultiPolygon",
        Geometry::GeometryCollection(_) => "GeometryCollection",
        Geometry::Rect(_) | Geometry::Triangle(_) => "Polygon",
    }
}

/// A component status in Chinese (完好 破损 丢失 占用 废弃) or English.
fn component_status(s: Str) -> Check<Str> {
    const STATUSES: [(&str, &str); 5] =
        [("完好", "intact"), ("破损", "damaged"), ("丢失", "missing"), ("占用", "occupied"), ("废弃", "abandoned")];
    STATUSES.iter().find(|(zh, en)| s == *zh || s.eq_ignore_ascii_case(en)).map(|(zh, _)| Str::from(*zh)).ok_or_else(
        || format!("status {s:?}: one of 完好 破损 丢失 占用 废弃 (intact damaged missing occupied abandoned)"),
    )
}

/// 2007-rule event class to the 2013 rule: majors 04 and 05 trade places.
fn swap_2007(code: &str) -> Str {
    match code.get(..2) {
        Some("04") => format!("05{}", &code[2..]).into(),
        Some("05") => format!("04{}", &code[2..]).into(),
        _ => code.into(),
    }
}

fn parse_date(col: &str, s: &str) -> Check<NaiveDate> {
    let s = s.get(..10).unwrap_or(s);
    ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .ok_or_else(|| format!("{col} {s:?}: not a date (YYYY-MM-DD)"))
}

/// An instant: RFC 3339, or a local date-time without zone taken as China Standard Time (UTC+8),
/// which is how Chinese systems export them.
fn parse_time(col: &str, s: &str) -> Check<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let cst = crate::model::city_tz();
    ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .and_then(|t| cst.from_local_datetime(&t).single())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{col} {s:?}: not a date-time (RFC 3339 or YYYY-MM-DD HH:MM:SS)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2007_rule_swaps_majors_04_and_05_only() {
        assert_eq!(swap_2007("0409"), "0509");
        assert_eq!(swap_2007("0501"), "0401");
        assert_eq!(swap_2007("0110"), "0110");
    }

    #[test]
    fn local_times_are_china_time() {
        let t = parse_time("t", "2026-03-01 08:00:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert!(parse_time("t", "yesterday").is_err());
        assert_eq!(parse_date("d", "2024/05/06").unwrap().to_string(), "2024-05-06");
        assert_eq!(component_status("damaged".into()).unwrap(), "破损");
        assert!(component_status("broken".into()).is_err());
    }
}
