//! The dictionaries compiled in from `data/` (the national class tables, the sensor kinds with
//! their default four-colour thresholds, the filing standard), so a demo city, an import and the alarm rules need no
//! files at run time. Low in the layers: the index, the engines and the importers all read it.
//!
//! The CSV files are tiny and never quoted: one record per line, `#` starts a comment line.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::model::{ComponentClass, Direction, EventClass, Str, Thresholds};

const MAJOR_CLASSES: &str = include_str!("../data/major_classes.csv");
const COMPONENT_CLASSES: &str = include_str!("../data/component_classes.csv");
const EVENT_CLASSES: &str = include_str!("../data/event_classes.csv");

/// The national filing standard (立案标准): class or major class or `*`, urgency, and the time
/// limit in working hours or days. Parsed by `cases::calendar::FilingStandard`, since a city may
/// give its own.
pub const FILING_STANDARDS: &str = include_str!("../data/filing_standards.csv");

/// Records of a comment-free, quote-free CSV text, each checked for its column count so a
/// typo in a dictionary fails the first test run rather than producing odd data.
pub(crate) fn records<'a>(text: &'a str, file: &'static str, columns: usize) -> impl Iterator<Item = Vec<&'a str>> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(move |l| {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        assert_eq!(f.len(), columns, "{file}: bad record {l:?}");
        f
    })
}

/// A major class (大类) of components or events.
#[derive(Debug, Clone, PartialEq)]
pub struct MajorClass {
    /// `component` or `event`.
    pub kind: Str,
    pub code: Str,
    pub name: Str,
}

/// Major classes from `data/major_classes.csv`.
pub fn major_classes() -> Vec<MajorClass> {
    records(MAJOR_CLASSES, "major_classes.csv", 3)
        .map(|f| MajorClass { kind: f[0].into(), code: f[1].into(), name: f[2].into() })
        .collect()
}

/// Component minor classes from `data/component_classes.csv`, in code order, without
/// departments (those belong to a city, see `demo::generate`).
pub fn component_classes() -> Vec<ComponentClass> {
    records(COMPONENT_CLASSES, "component_classes.csv", 4)
        .map(|f| ComponentClass {
            code: f[0].into(),
            major: f[1].into(),
            name: f[2].into(),
            geom_type: f[3].into(),
            competent_dept: None,
        })
        .collect()
}

/// Event minor classes from `data/event_classes.csv`, in code order, without departments.
pub fn event_classes() -> Vec<EventClass> {
    records(EVENT_CLASSES, "event_classes.csv", 3)
        .map(|f| EventClass { code: f[0].into(), major: f[1].into(), name: f[2].into(), default_dept: None })
        .collect()
}

/// One sensor kind of `data/sensor_kinds.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Kind {
    pub kind: Str,
    pub unit: Str,
    /// Chinese label of the measured quantity (积水深度, 可燃气体浓度 ...).
    pub label: Str,
    pub thresholds: Thresholds,
    /// The event class of the case an alarm opens.
    pub case_class: Str,
    /// A sensor linked to a component opens a component case of that component's class.
    pub component_case: bool,
    /// The plausible range of a reading; outside it a reading is refused.
    pub range: (f64, f64),
}

const SENSOR_KINDS: &str = include_str!("../data/sensor_kinds.csv");

/// The sensor kinds, by kind.
pub static KINDS: LazyLock<BTreeMap<Str, Kind>> =
    LazyLock::new(|| parse_kinds(SENSOR_KINDS).expect("data/sensor_kinds.csv is valid"));

/// The kind dictionary's entry for `kind`.
pub fn kind(kind: &str) -> Option<&'static Kind> {
    KINDS.get(kind)
}

fn parse_kinds(text: &str) -> Result<BTreeMap<Str, Kind>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: &str| format!("sensor_kinds.csv line {}: {what}", n + 1);
        if f.len() != 14 {
            return Err(bad("expected 14 fields"));
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad(&format!("{s:?} is not a number")));
        let opt = |s: &str| if s.is_empty() { Ok(None) } else { num(s).map(Some) };
        let direction = match f[3] {
            "above" => Direction::Above,
            "below" => Direction::Below,
            d => return Err(bad(&format!("direction {d:?}"))),
        };
        let thresholds = Thresholds {
            direction,
            blue: opt(f[4])?,
            yellow: opt(f[5])?,
            orange: opt(f[6])?,
            red: opt(f[7])?,
            hysteresis: num(f[8])?,
            min_duration_s: f[9].parse().map_err(|_| bad("min_duration_s"))?,
        };
        thresholds.check().map_err(|e| bad(&e))?;
        let kind = Kind {
            kind: f[0].into(),
            unit: f[1].into(),
            label: f[2].into(),
            thresholds,
            case_class: f[10].into(),
            component_case: f[11] == "yes",
            range: (num(f[12])?, num(f[13])?),
        };
        if kind.range.0 >= kind.range.1 {
            return Err(bad("min must be below max"));
        }
        out.insert(kind.kind.clone(), kind);
    }
    Ok(out)
}
