//! When a batch may call: windows of minutes since local midnight, on some weekdays, in an
//! IANA time zone (`call_time_window`).

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Clone, Debug)]
pub struct CallTimeWindow {
    /// Half-open `[start, end)` minutes since local midnight; `end` may be 1440.
    windows: Vec<(u16, u16)>,
    /// Empty means every day.
    days: Vec<Weekday>,
    timezone: TimeZone,
    timezone_name: String,
}

pub const DEFAULT_TIMEZONE: &str = "America/Los_Angeles";
const DAY_NAMES: [(&str, Weekday); 7] = [
    ("Monday", Weekday::Monday),
    ("Tuesday", Weekday::Tuesday),
    ("Wednesday", Weekday::Wednesday),
    ("Thursday", Weekday::Thursday),
    ("Friday", Weekday::Friday),
    ("Saturday", Weekday::Saturday),
    ("Sunday", Weekday::Sunday),
];

/// What is wrong, as `(field under call_time_window, problem)`.
pub type WindowError = (String, String);

impl CallTimeWindow {
    pub fn parse(windows: &[(f64, f64)], days: &[String], timezone: Option<&str>) -> Result<Self, WindowError> {
        if windows.is_empty() {
            return Err(("windows".into(), "must list at least one window".into()));
        }
        let mut parsed = Vec::new();
        for (i, (start, end)) in windows.iter().enumerate() {
            let whole = |v: f64| v.fract() == 0.0 && (0.0..=1440.0).contains(&v);
            if !whole(*start) || !whole(*end) || start >= end || *start >= 1440.0 {
                return Err((format!("windows[{i}]"), format!("needs whole minutes 0 <= start < end <= 1440, got [{start}, {end})")));
            }
            parsed.push((*start as u16, *end as u16));
        }
        let mut weekdays = Vec::new();
        for (i, day) in days.iter().enumerate() {
            let weekday = DAY_NAMES
                .iter()
                .find(|(name, _)| name == day)
                .map(|(_, weekday)| *weekday)
                .ok_or_else(|| (format!("day[{i}]"), format!("{day:?} is not a day name such as Monday")))?;
            weekdays.push(weekday);
        }
        let name = timezone.unwrap_or(DEFAULT_TIMEZONE);
        let timezone = TimeZone::get(name).map_err(|_| ("timezone".to_owned(), format!("{name:?} is not an IANA time zone")))?;
        Ok(Self { windows: parsed, days: weekdays, timezone, timezone_name: name.to_owned() })
    }

    pub fn windows(&self) -> &[(u16, u16)] {
        &self.windows
    }

    pub fn day_names(&self) -> Vec<&'static str> {
        self.days.iter().filter_map(|d| DAY_NAMES.iter().find(|(_, w)| w == d).map(|(n, _)| *n)).collect()
    }

    pub fn timezone_name(&self) -> &str {
        &self.timezone_name
    }

    fn day_allowed(&self, date: Date) -> bool {
        self.days.is_empty() || self.days.contains(&date.weekday())
    }

    /// Whether calls may be placed at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.timezone.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.day_allowed(local.date()) && self.windows.iter().any(|(start, end)| (*start..*end).contains(&minute))
    }

    /// The next moment at or after `at` when calls may be placed (within eight days).
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) {
            return Some(at);
        }
        let today = at.to_zoned(self.timezone.clone()).date();
        (0..8i64)
            .filter_map(|offset| today.checked_add(offset.days()).ok())
            .filter(|date| self.day_allowed(*date))
            .flat_map(|date| {
                self.windows.iter().filter_map(move |(start, _)| {
                    let time = jiff::civil::time((*start / 60) as i8, (*start % 60) as i8, 0, 0);
                    date.to_datetime(time).to_zoned(self.timezone.clone()).ok().map(|z| z.timestamp())
                })
            })
            .filter(|candidate| *candidate > at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    #[test]
    fn a_weekday_business_hours_window_in_new_york() {
        let days: Vec<String> = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"].map(String::from).to_vec();
        let window = CallTimeWindow::parse(&[(9.0 * 60.0, 17.0 * 60.0)], &days, Some("America/New_York")).unwrap();
        // 2026-11-24 is a Tuesday; New York is UTC-5 in November.
        assert!(window.is_open(at("2026-11-24T14:00:00Z")), "09:00 local");
        assert!(!window.is_open(at("2026-11-24T13:59:00Z")), "08:59 local");
        assert!(!window.is_open(at("2026-11-24T22:00:00Z")), "17:00 local is the end, excluded");
        assert_eq!(window.next_open(at("2026-11-24T23:00:00Z")), Some(at("2026-11-25T14:00:00Z")), "next morning");
        // Friday evening → Monday morning.
        assert_eq!(window.next_open(at("2026-11-27T23:00:00Z")), Some(at("2026-11-30T14:00:00Z")));
    }

    #[test]
    fn several_windows_and_the_end_of_the_day() {
        let window = CallTimeWindow::parse(&[(0.0, 60.0), (1380.0, 1440.0)], &[], Some("UTC")).unwrap();
        assert!(window.is_open(at("2026-11-24T23:59:00Z")));
        assert!(window.is_open(at("2026-11-24T00:30:00Z")));
        assert!(!window.is_open(at("2026-11-24T12:00:00Z")));
        assert_eq!(window.next_open(at("2026-11-24T12:00:00Z")), Some(at("2026-11-24T23:00:00Z")));
    }

    #[test]
    fn bad_windows_days_and_zones_name_their_field() {
        assert_eq!(CallTimeWindow::parse(&[], &[], None).unwrap_err().0, "windows");
        assert_eq!(CallTimeWindow::parse(&[(600.0, 500.0)], &[], None).unwrap_err().0, "windows[0]");
        assert_eq!(CallTimeWindow::parse(&[(0.0, 1441.0)], &[], None).unwrap_err().0, "windows[0]");
        assert_eq!(CallTimeWindow::parse(&[(0.0, 10.0)], &["Funday".into()], None).unwrap_err().0, "day[0]");
        assert_eq!(CallTimeWindow::parse(&[(0.0, 10.0)], &[], Some("Mars/Olympus")).unwrap_err().0, "timezone");
        assert_eq!(CallTimeWindow::parse(&[(0.0, 10.0)], &[], None).unwrap().timezone_name(), DEFAULT_TIMEZONE);
    }
}
