//! The city's records as plain Rust values: what the store persists, the demo generator makes and
//! the live index holds. One struct per collection; no I/O here.
//!
//! Strings are `CompactString` because a Chongqing-scale city holds ten million components and
//! almost every code, class and status fits the 24 inline bytes, which keeps the index in memory
//! without a heap allocation per field.

use chrono::{DateTime, NaiveDate, Utc};
use compact_str::CompactString;
use geo::{Geometry, MultiPolygon, Point, Polygon};
use serde::{Deserialize, Serialize};

/// Short alias: every code, name and status in the model.
pub type Str = CompactString;

/// The collections of the city, as the API names them (`/collections/{id}`) and the change log
/// records them. One enum, so a new collection is a compile error wherever it is not handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    Districts,
    Streets,
    Communities,
    Grids,
    Components,
    Cases,
    Sensors,
    /// Sensor alarms: not an index layer, but logged so every process and the feed hear of them.
    Alarms,
    /// API tokens: logged when one is revoked, so every server refuses it within a second.
    Tokens,
    /// Analysis overlays published to the big screens (the 热点 hotspot layer).
    Overlays,
    /// Field staff (监督员, 信息采集员, 处置人员) where they were last seen.
    Staff,
    /// Case photos: not an index layer, logged so the feed announces a new photo (`case.media`).
    Media,
    /// Video cameras (视频监控): how the centre confirms an alarm before crews arrive.
    Cameras,
    /// Emergency plans (预案): not an index layer, logged so every process reloads them.
    Plans,
    /// Joint-response incidents (联动事件) and their tasks: logged for the feed
    /// (`incident.created`, `incident.updated`).
    Incidents,
}

impl Collection {
    /// The collections an import or export knows, parents first (the order a city is imported in).
    pub const FEATURES: [Collection; 9] = [
        Collection::Districts,
        Collection::Streets,
        Collection::Communities,
        Collection::Grids,
        Collection::Components,
        Collection::Cases,
        Collection::Sensors,
        Collection::Staff,
        Collection::Cameras,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Collection::Districts => "districts",
            Collection::Streets => "streets",
            Collection::Communities => "communities",
            Collection::Grids => "grids",
            Collection::Components => "components",
            Collection::Cases => "cases",
            Collection::Sensors => "sensors",
            Collection::Alarms => "alarms",
            Collection::Tokens => "tokens",
            Collection::Overlays => "overlays",
            Collection::Staff => "staff",
            Collection::Media => "media",
            Collection::Cameras => "cameras",
            Collection::Plans => "plans",
            Collection::Incidents => "incidents",
        }
    }

    pub fn parse(s: &str) -> Option<Collection> {
        Self::FEATURES
            .into_iter()
            .chain([
                Collection::Alarms,
                Collection::Tokens,
                Collection::Overlays,
                Collection::Media,
                Collection::Plans,
                Collection::Incidents,
            ])
            .find(|c| c.as_str() == s)
    }

    /// A feature collection by its API id (`/collections/{id}`): not `alarms`.
    pub fn feature(s: &str) -> Option<Collection> {
        Self::FEATURES.into_iter().find(|c| c.as_str() == s)
    }

    /// The title `/collections` shows, Chinese first.
    pub fn title(self) -> &'static str {
        match self {
            Collection::Districts => "区县 Districts",
            Collection::Streets => "街道 Streets",
            Collection::Communities => "社区 Communities",
            Collection::Grids => "单元网格 Unit grids",
            Collection::Components => "管理部件 Components",
            Collection::Cases => "案件 Cases",
            Collection::Sensors => "感知设备 Sensors",
            Collection::Alarms => "告警 Alarms",
            Collection::Tokens => "令牌 API tokens",
            Collection::Overlays => "分析图层 Analysis overlays",
            Collection::Media => "案件照片 Case photos",
            Collection::Staff => "巡查人员 Field staff",
            Collection::Cameras => "视频监控 Cameras",
            Collection::Plans => "应急预案 Emergency plans",
            Collection::Incidents => "联动事件 Joint incidents",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Collection::Districts => "County-level districts (6-digit GB/T 2260 codes)",
            Collection::Streets => "Streets and towns (9-digit codes)",
            Collection::Communities => "Communities and villages (12-digit codes)",
            Collection::Grids => "Unit grids of about 10,000 m² (GB/T 30428.1, 14 or 15 digits)",
            Collection::Components => "City components (GB/T 30428.2, 16 or 17 digits)",
            Collection::Cases => "Reported cases and their workflow status",
            Collection::Sensors => "IoT sensors watching the city's lifelines",
            Collection::Alarms => "Sensor alarms and their lifecycle",
            Collection::Tokens => "API bearer tokens (their hashes)",
            Collection::Overlays => "Analysis results published to the big screens",
            Collection::Media => "Photos of cases, the evidence of each field step",
            Collection::Staff => "Supervisors and field workers, where they were last seen and whether on duty",
            Collection::Cameras => "Video cameras, with their stream and the direction they face",
            Collection::Plans => "Emergency plans: who responds to what, and which outside systems are called",
            Collection::Incidents => "Joint-response incidents started from plans, with each department's task",
        }
    }

    /// The unit grids and the regions above them: a change to any of them moves the hierarchy
    /// that locate answers and analysis units are built from.
    pub fn is_hierarchy(self) -> bool {
        matches!(self, Collection::Districts | Collection::Streets | Collection::Communities | Collection::Grids)
    }
}

/// Runs `$body` with `$t` bound to the model type of feature collection `$c` (a [`Collection`]),
/// or evaluates `$other` for `alarms`, `tokens` and `overlays`, which have no feature type. The one place a collection
/// turns into a type.
macro_rules! with_model {
    ($c:expr, |$t:ident| $body:expr, $other:expr) => {
        match $c {
            $crate::model::Collection::Districts => {
                type $t = $crate::model::District;
                $body
            }
            $crate::model::Collection::Streets => {
                type $t = $crate::model::Street;
                $body
            }
            $crate::model::Collection::Communities => {
                type $t = $crate::model::Community;
                $body
            }
            $crate::model::Collection::Grids => {
                type $t = $crate::model::Grid;
                $body
            }
            $crate::model::Collection::Components => {
                type $t = $crate::model::Component;
                $body
            }
            $crate::model::Collection::Cases => {
                type $t = $crate::model::Case;
                $body
            }
            $crate::model::Collection::Sensors => {
                type $t = $crate::model::Sensor;
                $body
            }
            $crate::model::Collection::Staff => {
                type $t = $crate::model::Staff;
                $body
            }
            $crate::model::Collection::Cameras => {
                type $t = $crate::model::Camera;
                $body
            }
            $crate::model::Collection::Alarms
            | $crate::model::Collection::Tokens
            | $crate::model::Collection::Overlays
            | $crate::model::Collection::Media
            | $crate::model::Collection::Plans
            | $crate::model::Collection::Incidents => $other,
        }
    };
}
pub(crate) use with_model;

impl std::fmt::Display for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The deadline light of a case (亮灯): green under 80% of its time limit, yellow from 80% to
/// 100%, red past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Light {
    Green,
    Yellow,
    Red,
}

impl Light {
    pub fn as_str(self) -> &'static str {
        match self {
            Light::Green => "green",
            Light::Yellow => "yellow",
            Light::Red => "red",
        }
    }
}

/// The light of `case` at `now`: yellow from its warning instant (80% of the working time from
/// the report to the deadline), red from the deadline; read at the close for a closed case (so a
/// case closed late stays red); none without a deadline or once voided or rejected.
pub fn light(case: &Case, now: DateTime<Utc>) -> Option<Light> {
    let deadline = case.deadline_at?;
    let end = match case.status {
        Status::Closed => case.closed_at.unwrap_or(now),
        Status::Voided | Status::Rejected => return None,
        _ => now,
    };
    // Cases stored before warning instants were kept: 80% of the calendar time.
    let warn = case.milestones.warn_at.unwrap_or_else(|| case.reported_at + (deadline - case.reported_at) * 4 / 5);
    Some(if end >= deadline {
        Light::Red
    } else if end >= warn {
        Light::Yellow
    } else {
        Light::Green
    })
}

/// Declares an enum of names as the API and the stores spell them, with `ALL`, `as_str`,
/// `parse` and `Display`, so the names live in one list.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Where a case stands in the workflow (案件状态).
    Status {
        Reported => "reported",
        Accepted => "accepted",
        Rejected => "rejected",
        Verified => "verified",
        Filed => "filed",
        Voided => "voided",
        Dispatched => "dispatched",
        ReturnRequested => "return_requested",
        PostponeRequested => "postpone_requested",
        Hung => "hung",
        Handled => "handled",
        Checked => "checked",
        Closed => "closed",
    }
);

impl Status {
    /// The workflow's final statuses: a case in one no longer runs against its deadline.
    pub const FINISHED: &'static [Status] = &[Status::Rejected, Status::Voided, Status::Closed];

    pub fn is_finished(self) -> bool {
        Self::FINISHED.contains(&self)
    }
}

named_enum!(
    /// A workflow action of the API contract (`POST /api/v1/cases/{id}/actions`).
    Action {
        Accept => "accept",
        Reject => "reject",
        Verify => "verify",
        File => "file",
        Void => "void",
        Dispatch => "dispatch",
        Handle => "handle",
        CheckPass => "check_pass",
        CheckFail => "check_fail",
        Return => "return",
        ApproveReturn => "approve_return",
        RequestPostpone => "request_postpone",
        ApprovePostpone => "approve_postpone",
        Hang => "hang",
        Resume => "resume",
        Close => "close",
    }
);

/// `x` to one decimal place: distances to the decimetre, minutes to the tenth, as answers give them.
pub fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The city's clock: China Standard Time (UTC+8, no daylight saving). City days, months and
/// working hours are counted on it.
pub fn city_tz() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset")
}

/// Which cases a caller may see and act on (the token's department and area). Every path that
/// reveals cases applies the same scope: by [`CaseScope::sees`] on one case, or by
/// [`CaseScope::filters`], property filters the index and the tiles already understand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CaseScope {
    /// Only cases dispatched to this department (a `department` token).
    pub dept: Option<Str>,
    /// Only cases in this district (6-digit code) or street (9 digits): the leading digits of
    /// the case's grid code (两级指挥: a district command centre sees its own area).
    pub area: Option<Str>,
    /// No case at all (a public reporting key or a device outside the Open311 paths).
    pub nothing: bool,
}

impl CaseScope {
    /// Every case: the city command centre.
    pub fn all() -> CaseScope {
        CaseScope::default()
    }

    /// No case.
    pub fn nothing() -> CaseScope {
        CaseScope { nothing: true, ..CaseScope::default() }
    }

    pub fn is_all(&self) -> bool {
        *self == CaseScope::default()
    }

    /// Whether a case dispatched to `dept` in grid `grid` is in scope.
    pub fn sees_parts(&self, dept: Option<&str>, grid: Option<&str>) -> bool {
        !self.nothing && self.dept.as_deref().is_none_or(|d| dept == Some(d)) && self.in_area(grid)
    }

    /// Whether a place in grid `grid` (a sensor's, a case's) lies in the area.
    pub fn in_area(&self, grid: Option<&str>) -> bool {
        self.area.as_deref().is_none_or(|a| grid.is_some_and(|g| g.starts_with(a)))
    }

    pub fn sees(&self, case: &Case) -> bool {
        self.sees_parts(case.dept_code.as_deref(), case.grid_code.as_deref())
    }

    /// Whether a unit code (district, street, community, grid) lies in the area, or the area in
    /// it: what an area-scoped evaluation may show.
    pub fn covers_unit(&self, code: &str) -> bool {
        self.area.as_deref().is_none_or(|a| code.starts_with(a))
    }

    /// The scope as equality filters on case properties (`dept_code`, and the derived
    /// `district_code` or `street_code`), added to whatever the caller asked for; `id = -1`
    /// matches nothing.
    pub fn filters(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.nothing {
            out.push(("id".into(), "-1".into()));
        }
        if let Some(d) = &self.dept {
            out.push(("dept_code".into(), d.to_string()));
        }
        if let Some(a) = &self.area {
            let level = if a.len() <= 6 { "district_code" } else { "street_code" };
            out.push((level.into(), a.to_string()));
        }
        out
    }
}

/// Longest code of a sensor or a staff member. Such codes are MQTT topic levels
/// (`onemap/sensors/{code}/readings`), so they also may not hold `/`, `+` or `#`.
pub const MAX_CODE: usize = 64;

/// A valid sensor or staff code: 1 to 64 letters, digits, `-`, `_`, `.` or `:`.
pub fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// An item of a batch (a reading, a position) refused on its own: why (`R`, the engine's reason
/// enum), and what exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused<R> {
    pub reason: R,
    pub detail: String,
}

/// A refusal for `reason`.
pub fn refuse<R>(reason: R, detail: impl Into<String>) -> Refused<R> {
    Refused { reason, detail: detail.into() }
}

/// Why a device's time stamp was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum StampError {
    /// Not RFC 3339 text or epoch milliseconds, or before 2000.
    Bad(String),
    /// Further ahead of the server's clock than the allowed drift.
    Future(String),
}

/// A device's time stamp (`at` of a reading or a position): RFC 3339 text or epoch
/// milliseconds, absent meaning `now` (devices without a clock), cut to the millisecond the
/// stores keep, so two stamps within one millisecond are the same one.
pub fn device_time(
    v: Option<&serde_json::Value>,
    now: DateTime<Utc>,
    future_slack: chrono::Duration,
) -> Result<DateTime<Utc>, StampError> {
    use serde_json::Value;
    let at = match v {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| StampError::Bad(format!("at {s:?} is not an RFC 3339 time")))?,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| StampError::Bad(format!("at {n} is not epoch milliseconds")))?,
        Some(other) => return Err(StampError::Bad(format!("at {other} is not a time"))),
    };
    let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
    if at > now + future_slack {
        return Err(StampError::Future(format!("at {at} is ahead of the server's clock ({now})")));
    }
    if at.timestamp() < 946_684_800 {
        return Err(StampError::Bad(format!("at {at} is before 2000")));
    }
    Ok(at)
}

/// Where readings or positions came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Http,
    Mqtt,
    /// A simulator of the server's own (`serve --simulate-sensors`, `--simulate`).
    Simulated,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Mqtt => "mqtt",
            Transport::Simulated => "simulated",
        }
    }
}

/// A time as the APIs write it: RFC 3339, UTC, milliseconds.
pub fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether `c` may stand in stored free text: every control character but tab, newline and
/// carriage return is refused. A NUL cannot cross into GDAL's C strings (every export failed on
/// one), and the C0 controls make XML (KML) ill-formed.
fn allowed_in_text(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// Checks free text a client sends (a description, a note, a name): an error naming `field`
/// and the first control character, for a 400.
pub fn check_text(field: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|&c| !allowed_in_text(c)) {
        Some(c) => {
            Err(format!("{field} holds the control character U+{:04X}; text may not hold control characters", c as u32))
        }
        None => Ok(()),
    }
}

/// `s` without the control characters [`check_text`] refuses: what an export writes, whatever
/// older versions stored.
pub fn strip_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(allowed_in_text) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.chars().filter(|&c| allowed_in_text(c)).collect())
    }
}

/// Alarm level, in rising severity (蓝 < 黄 < 橙 < 红).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Blue,
    Yellow,
    Orange,
    Red,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Blue, Level::Yellow, Level::Orange, Level::Red];

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The national colour name with its grade (蓝色预警 is grade IV, 红色 grade I).
    pub fn label(self) -> &'static str {
        match self {
            Level::Blue => "蓝色(IV级)",
            Level::Yellow => "黄色(III级)",
            Level::Orange => "橙色(II级)",
            Level::Red => "红色(I级)",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Blue => "blue",
            Level::Yellow => "yellow",
            Level::Orange => "orange",
            Level::Red => "red",
        }
    }
}

/// A county-level district (区县), 6-digit GB/T 2260 code.
#[derive(Debug, Clone, PartialEq)]
pub struct District {
    pub code: Str,
    pub name: Str,
    pub geom: MultiPolygon<f64>,
}

/// A street or town (街道), 9-digit code: district + 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Street {
    pub code: Str,
    pub name: Str,
    pub district_code: Str,
    pub geom: MultiPolygon<f64>,
}

/// A community or village (社区), 12-digit code: street + 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Community {
    pub code: Str,
    pub name: Str,
    pub street_code: Str,
    pub geom: MultiPolygon<f64>,
}

/// A unit grid (单元网格), 14 or 15 digits: community + 2 or 3.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub code: Str,
    pub name: Str,
    pub community_code: Str,
    /// Geodesic area in square metres, computed once when the grid is made or imported.
    pub area_m2: f64,
    pub geom: Polygon<f64>,
}

/// A department or unit that can be responsible for something (部门 / 权属单位 / 养护单位).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Department {
    /// 18-character unified social credit code (统一社会信用代码).
    pub code: Str,
    pub name: Str,
    /// `city`, `district`, `street`, `enterprise`: what kind of body this is.
    pub kind: Str,
    /// The district or street code this body governs, for territorial bodies.
    pub region_code: Option<Str>,
}

/// Who answers for what: the rows owner-first dispatch reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Responsibility {
    pub dept_code: Str,
    /// `territory` (target is a district, street, community or grid code: the body answers for
    /// every unit grid inside it), `event_class` (target is an event class code: the body is its
    /// default handler) or `component_class` (target is a component class code: the body is its
    /// competent department). Event and component class codes share the 4-digit space, hence two
    /// class scopes.
    pub scope: Str,
    pub target: Str,
    /// Free label shown to field staff, e.g. `street_office`, `class_default`, `patrol`.
    pub role: Str,
}

/// A component class (部件小类), 4-digit major+minor code from GB/T 30428.2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentClass {
    pub code: Str,
    pub major: Str,
    pub name: Str,
    /// `point` or `polygon`.
    pub geom_type: Str,
    pub competent_dept: Option<Str>,
}

/// An event class (事件小类), 4-digit major+minor code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventClass {
    pub code: Str,
    pub major: Str,
    pub name: Str,
    pub default_dept: Option<Str>,
}

/// A city component (管理部件).
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// 16 (2013 rule) or 17 (2026 rule) digits: county + major + minor + serial.
    pub code: Str,
    pub class_code: Str,
    pub name: Str,
    /// 完好 / 破损 / 丢失 / 占用 / 废弃.
    pub status: Str,
    pub competent_dept: Option<Str>,
    pub owner_dept: Option<Str>,
    pub maint_dept: Option<Str>,
    pub grid_code: Option<Str>,
    pub survey_date: Option<NaiveDate>,
    pub change_date: Option<NaiveDate>,
    pub source: Str,
    pub geom: Shape,
}

/// A component's geometry. Nearly all components are points, kept inline; the rare areal ones
/// (green space) are boxed, so ten million components do not each pay for `Geometry`'s largest
/// variant (56 bytes against 24: about 320 MB at Chongqing scale). Build it with `From`, which
/// always puts a point in `Point`, so equal geometries compare equal.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Point(Point<f64>),
    Other(Box<Geometry<f64>>),
}

impl Shape {
    pub fn to_geometry(&self) -> Geometry<f64> {
        match self {
            Shape::Point(p) => Geometry::Point(*p),
            Shape::Other(g) => (**g).clone(),
        }
    }
}

impl From<Geometry<f64>> for Shape {
    fn from(g: Geometry<f64>) -> Self {
        match g {
            Geometry::Point(p) => Shape::Point(p),
            g => Shape::Other(Box::new(g)),
        }
    }
}

impl From<Point<f64>> for Shape {
    fn from(p: Point<f64>) -> Self {
        Shape::Point(p)
    }
}

/// A case (案件): basic record; the workflow grows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: i64,
    pub class_code: Str,
    /// `component` or `event`.
    pub kind: Str,
    pub component_code: Option<Str>,
    pub description: String,
    /// `supervisor`, `public`, `hotline`, `video`, `sensor`.
    pub source: Str,
    pub status: Status,
    pub urgency: Str,
    pub grid_code: Option<Str>,
    pub reported_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// When the case must be closed by; its light (green, yellow, red) is measured against it.
    pub deadline_at: Option<DateTime<Utc>>,
    /// The department the case is dispatched to, once it is.
    pub dept_code: Option<Str>,
    pub version: i32,
    pub geom: Point<f64>,
    /// When the workflow reached its milestones: what evaluation counts.
    pub milestones: Milestones,
    /// The light at the live view's light clock (see `events::Live`), set whenever the record
    /// enters the index or the clock moves; not stored. `None` outside the index.
    pub light: Option<Light>,
    /// The supervisor (staff code) sent to do the case's field task (verify a public report,
    /// check a handled case); every workflow step clears it, so it always names the current
    /// task's supervisor.
    pub assignee: Option<Str>,
    pub assigned_at: Option<DateTime<Utc>>,
}

/// The milestones of a case's workflow, kept on the case itself (and written in the same
/// transaction as the step that reaches them) so that evaluation is one scan of `cases` rather
/// than a fold over millions of history steps. Each one is what [`crate::cases::apply`] derives
/// from the history, so a replay of the history gives the same values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Milestones {
    /// The first filing (立案).
    pub filed_at: Option<DateTime<Utc>>,
    /// When the case must be dispatched by: the dispatch time limit after filing (派遣时限).
    pub dispatch_due_at: Option<DateTime<Utc>>,
    /// The first dispatch.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// The latest handling (after rework, the last one counts).
    pub handled_at: Option<DateTime<Utc>>,
    /// When the filing was voided (作废), if it was.
    pub voided_at: Option<DateTime<Utc>>,
    /// When the light turns yellow: 80% of the working time from report to deadline.
    pub warn_at: Option<DateTime<Utc>>,
    /// How many times a check failed and sent the case back (返工).
    pub reworks: i32,
}

/// One step of a case's append-only history (`case_steps`): who did what, when, and the status
/// it moved the case from and to.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseStep {
    pub case_id: i64,
    /// 1 for the report, then one more per action.
    pub seq: i32,
    pub action: Str,
    /// Who acted: a token's label, or the role when the token has none.
    pub actor: Str,
    pub role: Str,
    pub dept_code: Option<Str>,
    pub status_from: Option<Status>,
    pub status_to: Status,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

/// An API bearer token as stored: only its SHA-256 hash, never the token itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// Lower-case hex SHA-256 of the token.
    pub hash: Str,
    pub role: Str,
    /// The department a `department` token acts for.
    pub dept_code: Option<Str>,
    pub label: Option<Str>,
    pub created_at: DateTime<Utc>,
    /// The district (6 digits) or street (9 digits) the holder works in; `None`: the whole city.
    pub area_code: Option<Str>,
    /// A device token's sensors: the prefix of the codes it may post readings for.
    pub sensors_prefix: Option<Str>,
    /// After this instant the token is refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// The member of the field staff the token belongs to (a phone's token).
    pub staff_code: Option<Str>,
}

/// A revoked token (its hash), kept so every server of the store refuses it; logged as a change
/// of `tokens` so they hear of it at once.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRevocation {
    pub hash: Str,
    pub revoked_at: DateTime<Utc>,
}

/// The field step a case photo is evidence of (上报, 核实, 处置后, 核查照片).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaStep {
    Report,
    Verify,
    Handle,
    Check,
}

impl MediaStep {
    pub const ALL: [MediaStep; 4] = [MediaStep::Report, MediaStep::Verify, MediaStep::Handle, MediaStep::Check];

    pub const fn as_str(self) -> &'static str {
        match self {
            MediaStep::Report => "report",
            MediaStep::Verify => "verify",
            MediaStep::Handle => "handle",
            MediaStep::Check => "check",
        }
    }

    pub fn parse(s: &str) -> Option<MediaStep> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The workflow action a photo of this step is the proof of, where one is.
    pub fn proves(self) -> Option<Action> {
        match self {
            MediaStep::Report => None,
            MediaStep::Verify => Some(Action::Verify),
            MediaStep::Handle => Some(Action::Handle),
            MediaStep::Check => Some(Action::CheckPass),
        }
    }
}

/// Where a photo says it was taken (EXIF GPS, WGS84) and how far that is from its case.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhotoPlace {
    pub lon: f64,
    pub lat: f64,
    pub distance_m: f64,
}

/// A photo of a case: the row that describes two objects in the media store, the original and
/// its thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub id: Str,
    pub case_id: i64,
    pub step: MediaStep,
    pub content_type: Str,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
    /// When the camera says it was taken (EXIF), if it says.
    pub taken_at: Option<DateTime<Utc>>,
    pub place: Option<PhotoPlace>,
    /// The keys of the original and of the thumbnail in the media store.
    pub object: Str,
    pub thumbnail: Str,
    pub actor: Str,
    pub role: Str,
    pub uploaded_at: DateTime<Utc>,
}

/// An IoT sensor watching a lifeline (城市生命线): a water level, gas, pressure, strain ... gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub code: Str,
    pub kind: Str,
    pub name: Str,
    pub component_code: Option<Str>,
    pub grid_code: Option<Str>,
    /// Per-sensor threshold overrides as given at registration (JSON object), if any.
    pub thresholds: Option<serde_json::Value>,
    pub geom: Point<f64>,
    /// The latest reading and alarm level, shared with the ingest loop (not stored in this row).
    pub live: SensorLive,
}

/// What a sensor shows right now. Shared by the index record and the readings ingest, so a
/// reading changes what the map and the features API show without an R-tree update.
#[derive(Debug, Clone, Default)]
pub struct SensorLive(pub std::sync::Arc<parking_lot::Mutex<LiveStatus>>);

impl SensorLive {
    pub fn get(&self) -> LiveStatus {
        *self.0.lock()
    }
}

/// Live state is not part of a sensor's identity: two records of one sensor are equal whatever
/// they last read.
impl PartialEq for SensorLive {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A sensor's latest applied reading, its alarm level and whether it has gone quiet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveStatus {
    pub at: Option<DateTime<Utc>>,
    pub value: Option<f64>,
    pub level: Option<Level>,
    /// No reading for longer than the configured stale time (or never one).
    pub stale: bool,
}

/// One sensor reading (观测值), as stored in the time-ordered readings table.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub sensor: Str,
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// One point of a sensor's history: a reading, or the summary of a time bucket of them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingBucket {
    pub at: DateTime<Utc>,
    /// The reading, or the bucket's mean.
    pub value: f64,
    pub min: f64,
    pub max: f64,
    /// Readings summarised (1 for a single reading).
    pub n: i64,
}

/// An alarm (告警) with its lifecycle: raised at a level, escalated or de-escalated, cleared, and
/// acknowledged by an operator; at yellow or above it opens a case.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Assigned by the store; 0 before.
    pub id: i64,
    pub sensor_code: Str,
    /// The level now (the level it cleared from, once cleared).
    pub level: Level,
    /// The most severe level it reached.
    pub peak_level: Level,
    pub raised_at: DateTime<Utc>,
    /// The reading that raised it.
    pub value: f64,
    /// The latest change (raise, escalation, de-escalation, clearing).
    pub updated_at: DateTime<Utc>,
    /// The reading of the latest change.
    pub last_value: f64,
    pub cleared_at: Option<DateTime<Utc>>,
    pub acked_at: Option<DateTime<Utc>>,
    pub acked_by: Option<Str>,
    pub case_id: Option<i64>,
}

named_enum!(
    /// What a member of the field staff does.
    StaffRole {
        /// 监督员: patrols, reports, verifies public reports and checks departments' work.
        Supervisor => "supervisor",
        /// 信息采集员: patrols and reports (an outsourced collector in many cities).
        Collector => "collector",
        /// 处置人员: a department's field worker, who fixes what was dispatched.
        Worker => "worker",
    }
);

impl StaffRole {
    /// Whether the role patrols grids and may be sent to verify or check a case.
    pub fn patrols(self) -> bool {
        matches!(self, StaffRole::Supervisor | StaffRole::Collector)
    }
}

/// A member of the field staff (巡查人员) and where they were last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Staff {
    /// A safe MQTT topic level, like sensor codes (`onemap/staff/{code}/positions`).
    pub code: Str,
    pub name: Str,
    pub role: StaffRole,
    /// The department a worker belongs to.
    pub dept_code: Option<Str>,
    /// The community whose grids the member patrols, if any.
    pub community_code: Option<Str>,
    /// Unit grids the member patrols beyond the community's (责任网格). Shared, so moving a
    /// record on every position does not copy the list.
    pub grids: std::sync::Arc<[Str]>,
    /// Where the member is: the latest position, or where they were registered until one comes
    /// (the stored point).
    pub geom: Point<f64>,
    /// The time of the latest position; not in the staff row (it comes from the tracks).
    pub last_seen: Option<DateTime<Utc>>,
    /// A position came within the duty timeout (5 minutes by default); moved only through the
    /// change log, so every replica agrees.
    pub on_duty: bool,
    /// The unit grid of the latest position.
    pub grid_code: Option<Str>,
}

/// A video camera (视频监控): how the command centre looks at a place before crews arrive.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    pub code: Str,
    pub name: Str,
    /// Where the picture is played from (an HLS, RTSP or vendor URL), if known.
    pub stream_url: Option<Str>,
    /// The bearing it faces, degrees clockwise from north.
    pub direction: Option<f64>,
    /// The unit grid it stands in, located when it is registered.
    pub grid_code: Option<Str>,
    pub geom: Point<f64>,
}

/// One point of a member's track (巡查轨迹), in CGCS2000.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub staff: Str,
    pub at: DateTime<Utc>,
    pub lon: f64,
    pub lat: f64,
    /// The unit grid it falls in, located at ingest.
    pub grid_code: Option<Str>,
}

/// One member's patrol on one city day (巡查日统计): what coverage reports read instead of the
/// tracks. Each positions batch adds to it.
#[derive(Debug, Clone, PartialEq)]
pub struct PatrolDay {
    pub day: NaiveDate,
    pub staff: Str,
    pub positions: i64,
    /// Walked between positions less than the duty timeout apart.
    pub distance_m: f64,
    /// Time between positions less than the duty timeout apart.
    pub duty_s: f64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// One member's positions in one unit grid on one city day.
#[derive(Debug, Clone, PartialEq)]
pub struct PatrolVisit {
    pub day: NaiveDate,
    pub staff: Str,
    pub grid: Str,
    pub positions: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A whole city: what the demo generator produces, the store writes in one go and loads at start-up.
#[derive(Debug, Clone, Default)]
pub struct City {
    pub districts: Vec<District>,
    pub streets: Vec<Street>,
    pub communities: Vec<Community>,
    pub grids: Vec<Grid>,
    pub departments: Vec<Department>,
    pub responsibilities: Vec<Responsibility>,
    pub component_classes: Vec<ComponentClass>,
    pub event_classes: Vec<EventClass>,
    pub components: Vec<Component>,
    pub cases: Vec<Case>,
    /// The histories of `cases` (written with the city; never loaded into the index).
    pub case_steps: Vec<CaseStep>,
    pub sensors: Vec<Sensor>,
    pub staff: Vec<Staff>,
    pub cameras: Vec<Camera>,
}

/// Whether high or low values are dangerous (drain level: above; water-main pressure: below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Above,
    Below,
}

/// A sensor's thresholds: any level may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub direction: Direction,
    pub blue: Option<f64>,
    pub yellow: Option<f64>,
    pub orange: Option<f64>,
    pub red: Option<f64>,
    pub hysteresis: f64,
    pub min_duration_s: i64,
}

impl Thresholds {
    fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::Blue => self.blue,
            Level::Yellow => self.yellow,
            Level::Orange => self.orange,
            Level::Red => self.red,
        }
    }

    /// `value` is past `threshold` in the dangerous direction, the threshold moved back towards
    /// safety by `slack` (the hysteresis, for a level already raised).
    fn past(&self, value: f64, threshold: f64, slack: f64) -> bool {
        match self.direction {
            Direction::Above => value >= threshold - slack,
            Direction::Below => value <= threshold + slack,
        }
    }

    /// The most severe level `value` reaches, with no hysteresis.
    pub fn level_of(&self, value: f64) -> Option<Level> {
        Level::ALL.into_iter().rev().find(|&l| self.threshold(l).is_some_and(|t| self.past(value, t, 0.0)))
    }

    /// The level `value` calls for when `current` is raised: a more severe level by its plain
    /// threshold; `current` and the levels below it as long as the value stays within the
    /// hysteresis of their thresholds.
    pub fn target(&self, current: Option<Level>, value: f64) -> Option<Level> {
        let plain = self.level_of(value);
        let held = current.and_then(|c| {
            Level::ALL
                .into_iter()
                .rev()
                .filter(|&l| l <= c)
                .find(|&l| self.threshold(l).is_some_and(|t| self.past(value, t, self.hysteresis)))
        });
        plain.max(held)
    }

    /// Rejects thresholds that cannot make sense: non-finite values, a negative hysteresis or
    /// duration, or levels out of order for the direction.
    pub fn check(&self) -> Result<(), String> {
        let set: Vec<(Level, f64)> = Level::ALL.into_iter().filter_map(|l| self.threshold(l).map(|t| (l, t))).collect();
        if set.iter().any(|(_, t)| !t.is_finite()) || !self.hysteresis.is_finite() {
            return Err("thresholds and hysteresis must be finite numbers".into());
        }
        if self.hysteresis < 0.0 || self.min_duration_s < 0 {
            return Err("hysteresis and min_duration_s must not be negative".into());
        }
        for w in set.windows(2) {
            let ordered = match self.direction {
                Direction::Above => w[0].1 <= w[1].1,
                Direction::Below => w[0].1 >= w[1].1,
            };
            if !ordered {
                return Err(format!(
                    "{} ({}) must not be {} {} ({})",
                    w[1].0.as_str(),
                    w[1].1,
                    if self.direction == Direction::Above { "below" } else { "above" },
                    w[0].0.as_str(),
                    w[0].1
                ));
            }
        }
        Ok(())
    }
}
