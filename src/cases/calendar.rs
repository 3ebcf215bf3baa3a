//! Deadlines: the working calendar (work hours, weekends, holidays, make-up workdays) and the
//! filing standard (立结案标准) that gives each class and urgency its time limit.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::Deserialize;

/// The instant city day `d` begins at in the city's time zone `city`.
pub fn midnight(d: NaiveDate, city: FixedOffset) -> DateTime<Utc> {
    city.from_local_datetime(&d.and_time(NaiveTime::MIN)).single().expect("fixed offsets are unambiguous").to_utc()
}

/// The city's working calendar, from the `[calendar]` table of the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Calendar {
    /// Local working hours, "HH:MM".
    pub work_start: String,
    pub work_end: String,
    /// Hours east of UTC of the city's clock (Beijing: 8).
    pub utc_offset_hours: i32,
    /// Days off every week, as "Sat", "Sun", ...
    pub weekend: Vec<String>,
    /// Public holidays (法定节假日).
    pub holidays: Vec<NaiveDate>,
    /// Weekend days that are worked (调休上班).
    pub workdays: Vec<NaiveDate>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            work_start: "09:00".into(),
            work_end: "17:30".into(),
            utc_offset_hours: 8,
            weekend: vec!["Sat".into(), "Sun".into()],
            holidays: vec![],
            workdays: vec![],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalendarError {
    #[error("calendar: {0}")]
    Invalid(String),
}

/// A checked calendar, ready to count working time.
#[derive(Debug, Clone)]
pub struct WorkCalendar {
    start: NaiveTime,
    end: NaiveTime,
    offset: FixedOffset,
    weekend: Vec<Weekday>,
    holidays: Vec<NaiveDate>,
    workdays: Vec<NaiveDate>,
}

impl TryFrom<&Calendar> for WorkCalendar {
    type Error = CalendarError;
    fn try_from(c: &Calendar) -> Result<Self, CalendarError> {
        let t =
            |s: &str| NaiveTime::parse_from_str(s, "%H:%M").map_err(|e| CalendarError::Invalid(format!("{s:?}: {e}")));
        let (start, end) = (t(&c.work_start)?, t(&c.work_end)?);
        if start >= end {
            return Err(CalendarError::Invalid("work_start must be before work_end".into()));
        }
        let offset = FixedOffset::east_opt(c.utc_offset_hours * 3600)
            .ok_or_else(|| CalendarError::Invalid(format!("utc_offset_hours {}", c.utc_offset_hours)))?;
        let weekend = c
            .weekend
            .iter()
            .map(|d| d.parse::<Weekday>().map_err(|_| CalendarError::Invalid(format!("weekend day {d:?}"))))
            .collect::<Result<_, _>>()?;
        Ok(WorkCalendar { start, end, offset, weekend, holidays: c.holidays.clone(), workdays: c.workdays.clone() })
    }
}

impl Default for WorkCalendar {
    fn default() -> Self {
        WorkCalendar::try_from(&Calendar::default()).expect("the default calendar is valid")
    }
}

impl WorkCalendar {
    pub fn is_workday(&self, d: NaiveDate) -> bool {
        self.workdays.contains(&d) || !(self.holidays.contains(&d) || self.weekend.contains(&d.weekday()))
    }

    /// The city's time zone.
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// Working hours in one workday.
    pub fn day_hours(&self) -> f64 {
        (self.end - self.start).num_seconds() as f64 / 3600.0
    }

    /// The instant `hours` working hours after `from`: time outside working hours, on weekends
    /// and holidays does not count; a report after hours starts counting at the next opening.
    pub fn add_work_hours(&self, from: DateTime<Utc>, hours: f64) -> DateTime<Utc> {
        let mut left = Duration::seconds((hours * 3600.0).round() as i64);
        let mut now = from.with_timezone(&self.offset);
        loop {
            let day = now.date_naive();
            if self.is_workday(day) {
                let open = self.at(day, self.start);
                let close = self.at(day, self.end);
                let begin = now.max(open);
                if begin < close {
                    if begin + left <= close {
                        return (begin + left).with_timezone(&Utc);
                    }
                    left -= close - begin;
                }
            }
            now = self.at(day + Duration::days(1), NaiveTime::MIN);
        }
    }

    /// Working hours between `from` and `to` (0 when `to` is not later): the inverse of
    /// [`Self::add_work_hours`].
    pub fn work_hours_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let (from, to) = (from.with_timezone(&self.offset), to.with_timezone(&self.offset));
        let mut total = Duration::zero();
        let mut day = from.date_naive();
        while day <= to.date_naive() {
            if self.is_workday(day) {
                let begin = from.max(self.at(day, self.start));
                let end = to.min(self.at(day, self.end));
                if begin < end {
                    total += end - begin;
                }
            }
            day += Duration::days(1);
        }
        total.num_milliseconds() as f64 / 3_600_000.0
    }

    fn at(&self, day: NaiveDate, t: NaiveTime) -> DateTime<FixedOffset> {
        self.offset.from_local_datetime(&day.and_time(t)).single().expect("fixed offsets are unambiguous")
    }
}

/// A time limit of the filing standard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    WorkHours(f64),
    WorkDays(f64),
}

/// The filing standard: (class pattern, urgency) -> limit; the most specific class wins.
#[derive(Debug, Clone)]
pub struct FilingStandard {
    rows: Vec<(String, String, Limit)>,
}

impl Default for FilingStandard {
    fn default() -> Self {
        FilingStandard::parse(crate::catalog::FILING_STANDARDS).expect("data/filing_standards.csv is valid")
    }
}

impl FilingStandard {
    /// Rows of `class,urgency,limit,unit`; `#` lines are comments.
    pub fn parse(text: &str) -> Result<Self, CalendarError> {
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = || CalendarError::Invalid(format!("filing standard line {}: {line:?}", n + 1));
            let [class, urgency, limit, unit] = f[..] else { return Err(bad()) };
            let limit: f64 = limit.parse().ok().filter(|l: &f64| *l > 0.0).ok_or_else(bad)?;
            let limit = match unit {
                "hours" => Limit::WorkHours(limit),
                "days" => Limit::WorkDays(limit),
                _ => return Err(bad()),
            };
            rows.push((class.to_string(), urgency.to_string(), limit));
        }
        Ok(FilingStandard { rows })
    }

    /// The limit for a class and urgency: the exact class, then its major class, then `*`.
    pub fn limit(&self, class_code: &str, urgency: &str) -> Option<Limit> {
        let candidates = [class_code, class_code.get(..2).unwrap_or(class_code), "*"];
        candidates.iter().find_map(|c| self.rows.iter().find(|r| r.0 == *c && r.1 == urgency).map(|r| r.2))
    }

    /// The deadline of a case reported at `at`, on `calendar`.
    pub fn deadline(
        &self,
        calendar: &WorkCalendar,
        class_code: &str,
        urgency: &str,
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let hours = match self.limit(class_code, urgency)? {
            Limit::WorkHours(h) => h,
            Limit::WorkDays(d) => d * calendar.day_hours(),
        };
        Some(calendar.add_work_hours(at, hours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bj(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn working_hours_skip_nights_weekends_and_holidays_but_not_makeup_days() {
        let cal = WorkCalendar::try_from(&Calendar {
            holidays: vec![
                NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 10, 2).unwrap(),
            ],
            workdays: vec![NaiveDate::from_ymd_opt(2026, 10, 10).unwrap()],
            ..Calendar::default()
        })
        .unwrap();
        // Within a day.
        assert_eq!(cal.add_work_hours(bj("2026-11-24T10:00:00"), 4.0), bj("2026-11-24T14:00:00"));
        // Across the evening: 17:00 + 2 h = 09:00 + 1.5 h next morning.
        assert_eq!(cal.add_work_hours(bj("2026-11-24T17:00:00"), 2.0), bj("2026-11-25T10:30:00"));
        // Friday afternoon to Monday.
        assert_eq!(cal.add_work_hours(bj("2026-11-27T16:30:00"), 2.0), bj("2026-11-30T10:00:00"));
        // Reported on Saturday night: counting starts Monday 09:00.
        assert_eq!(cal.add_work_hours(bj("2026-11-28T22:00:00"), 1.0), bj("2026-11-30T10:00:00"));
        // Wednesday 30 Sep 17:00 + 1 h: the holidays 1-2 Oct and the weekend pass, Monday 5 Oct.
        assert_eq!(cal.add_work_hours(bj("2026-09-30T17:00:00"), 1.0), bj("2026-10-05T09:30:00"));
        // Saturday 10 Oct is a make-up workday.
        assert_eq!(cal.add_work_hours(bj("2026-10-09T17:00:00"), 1.0), bj("2026-10-10T09:30:00"));
        // Counting back gives the hours added, from inside and outside working time.
        for (from, h) in [("2026-11-24T10:00:00", 4.0), ("2026-11-28T22:00:00", 1.0), ("2026-09-30T17:00:00", 9.5)] {
            let to = cal.add_work_hours(bj(from), h);
            assert!((cal.work_hours_between(bj(from), to) - h).abs() < 1e-9, "{from} + {h} h");
        }
        assert_eq!(cal.work_hours_between(bj("2026-11-24T18:00:00"), bj("2026-11-24T08:00:00")), 0.0);
    }

    #[test]
    fn the_most_specific_standard_wins() {
        let s = FilingStandard::default();
        assert_eq!(s.limit("0501", "urgent"), Some(Limit::WorkHours(2.0)));
        assert_eq!(s.limit("0502", "normal"), Some(Limit::WorkHours(8.0)), "major class 05");
        assert_eq!(s.limit("0112", "normal"), Some(Limit::WorkDays(1.0)));
        assert_eq!(s.limit("0305", "normal"), Some(Limit::WorkDays(3.0)), "the * row");
        let cal = WorkCalendar::default();
        // One working day of 8.5 hours from Tuesday 10:00 is Wednesday 10:00.
        assert_eq!(s.deadline(&cal, "0110", "normal", bj("2026-11-24T10:00:00")), Some(bj("2026-11-25T10:00:00")));
        assert!(FilingStandard::parse("x,y").is_err());
        assert!(WorkCalendar::try_from(&Calendar { work_start: "18:00".into(), ..Calendar::default() }).is_err());
    }
}
