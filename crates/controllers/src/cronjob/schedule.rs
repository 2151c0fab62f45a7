//! Cron schedules as upstream parses them (`github.com/robfig/cron/v3`'s
//! `ParseStandard`): five fields — minute, hour, day of month, month, day of week —
//! each a list of `*`, `?`, `n`, `a-b`, with `/step`, month and weekday names, the
//! `@yearly`…`@hourly` descriptors, `@every <duration>`, and a `TZ=`/`CRON_TZ=` prefix;
//! and upstream's `mostRecentScheduleTime`, the unmet time a CronJob should run.
//!
//! Hand-written: no cron crate is in the lock file or the crate research, and the time
//! zones come from jiff (already a dependency) reading the system's zoneinfo.
//! Must never loop without bound: a search gives up five years out, as robfig's does.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    zone: TimeZone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// Bit sets of the allowed values, and whether day-of-month / day-of-week were `*`.
    Spec { minute: u64, hour: u64, dom: u64, month: u64, dow: u64, dom_star: bool, dow_star: bool },
    /// `@every`: a constant delay, whole seconds.
    Every(u64),
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Looks a time zone up in the tz database (Go's `time.LoadLocation`; `""` and `UTC`
/// are UTC).
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| format!("unknown time zone {name}"))
}

impl Schedule {
    /// Parses `text` in `zone` (a `TZ=` prefix takes precedence).
    pub fn parse(text: &str, zone_name: &str) -> Result<Schedule, String> {
        let mut text = text.trim();
        let mut zone_name = zone_name.to_owned();
        if let Some(rest) = text.strip_prefix("TZ=").or_else(|| text.strip_prefix("CRON_TZ=")) {
            let (name, rest) = rest.split_once(' ').ok_or("missing spec after timezone")?;
            zone_name = name.to_owned();
            text = rest.trim();
        }
        let zone =
            zone(&zone_name).map_err(|e| format!("provided bad location {zone_name}: {e}"))?;
        if let Some(delay) = text.strip_prefix("@every ") {
            let seconds = parse_go_duration(delay.trim())
                .ok_or_else(|| format!("failed to parse duration {text}"))?;
            return Ok(Schedule { kind: Kind::Every(seconds.max(1)), zone });
        }
        let text = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(format!("unrecognized descriptor: {t}")),
            t => t,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: {text}", fields.len()));
        }
        let (minute, _) = field(fields[0], 0, 59, &[])?;
        let (hour, _) = field(fields[1], 0, 23, &[])?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[])?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS)?;
        Ok(Schedule {
            kind: Kind::Spec { minute, hour, dom, month, dow, dom_star, dow_star },
            zone,
        })
    }

    /// The first activation strictly after `t`; `None` if none within five years.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow, dom_star, dow_star) = match self.kind {
            Kind::Every(seconds) => {
                let whole = t.as_second() + seconds as i64;
                return Timestamp::from_second(whole).ok();
            }
            Kind::Spec { minute, hour, dom, month, dow, dom_star, dow_star } => {
                (minute, hour, dom, month, dow, dom_star, dow_star)
            }
        };
        let has = |set: u64, v: i64| set & (1 << v) != 0;
        let day_ok = |d: Date| {
            let (a, b) =
                (has(dom, d.day().into()), has(dow, d.weekday().to_sunday_zero_offset().into()));
            if dom_star || dow_star { a && b } else { a || b }
        };
        // Start at the next whole minute, as wall-clock time in the zone.
        let start =
            Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60) + 60).ok()?;
        let mut dt: DateTime = self.zone.to_datetime(start);
        let limit = dt.year() + 5;
        'wrap: loop {
            if dt.year() > limit {
                return None;
            }
            while !has(month, dt.month().into()) {
                dt = dt.first_of_month().checked_add(1.month()).ok()?.start_of_day();
                if dt.month() == 1 {
                    continue 'wrap;
                }
            }
            while !day_ok(dt.date()) {
                dt = dt.date().tomorrow().ok()?.to_datetime(Default::default());
                if dt.day() == 1 {
                    continue 'wrap;
                }
            }
            while !has(hour, dt.hour().into()) {
                dt = dt.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                if dt.hour() == 0 {
                    continue 'wrap;
                }
            }
            while !has(minute, dt.minute().into()) {
                dt = dt.checked_add(1.minute()).ok()?;
                if dt.minute() == 0 {
                    continue 'wrap;
                }
            }
            let at = self.zone.to_timestamp(dt).ok()?;
            if at > t {
                return Some(at);
            }
            // A wall-clock time repeated by a DST fold: look on.
            dt = dt.checked_add(1.minute()).ok()?;
        }
    }
}

/// The bits of one field and whether it was `*`/`?` (robfig's star bit, which a step
/// above 1 clears).
fn field(text: &str, low: i64, high: i64, names: &[&str]) -> Result<(u64, bool), String> {
    let (mut bits, mut star) = (0u64, false);
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let value = |s: &str| -> Result<i64, String> {
            let lower = s.to_ascii_lowercase();
            if let Some(i) = names.iter().position(|n| *n == lower) {
                return Ok(i as i64 + if names.len() == 12 { 1 } else { 0 });
            }
            s.parse::<u32>().map(i64::from).map_err(|_| format!("failed to parse int from {s}"))
        };
        let (mut first, mut last, mut is_star) = (low, high, false);
        if range == "*" || range == "?" {
            is_star = true;
        } else if let Some((a, b)) = range.split_once('-') {
            (first, last) = (value(a)?, value(b)?);
        } else {
            first = value(range)?;
            last = if step.is_some() { high } else { first };
        }
        let step = match step {
            None => 1,
            Some(s) => s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))?,
        };
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        if first < low {
            return Err(format!("beginning of range ({first}) below minimum ({low}): {part}"));
        }
        if last > high {
            return Err(format!("end of range ({last}) above maximum ({high}): {part}"));
        }
        if first > last {
            return Err(format!(
                "beginning of range ({first}) beyond end of range ({last}): {part}"
            ));
        }
        star |= is_star && step == 1;
        bits |= (first..=last).step_by(step as usize).fold(0, |b, v| b | 1 << v);
    }
    Ok((bits, star))
}

/// Go's `time.ParseDuration`, rounded down to whole seconds (robfig's `Every`).
fn parse_go_duration(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut nanos = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * scale;
        rest = &rest[unit_end..];
    }
    Some((nanos / 1e9) as u64)
}

/// How many schedules were missed: upstream's `missedSchedulesType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: upstream warns with `TooManyMissedTimes`.
    Many,
}

/// Upstream's `mostRecentScheduleTime`: from `earliest` (the last schedule time, else
/// the creation time, moved up to `now - startingDeadlineSeconds` when
/// `starting_deadline` is given), the latest activation at or before `now`, and how many
/// were missed. Returns `(earliest, most recent, missed)`.
pub fn most_recent(
    schedule: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
    starting_deadline: Option<i64>,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = earliest;
    if let Some(seconds) = starting_deadline {
        let deadline = now - Duration::from_secs(seconds.max(0) as u64);
        earliest = earliest.max(deadline);
    }
    // A schedule with no time left in the search (robfig's zero time, never before
    // `now`) is invalid, as upstream finds it: no interval between its times.
    let invalid = || Err("time difference between two schedules is less than 1 second".into());
    let Some(t1) = schedule.next(earliest) else { return invalid() };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = schedule.next(t1) else { return invalid() };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return invalid();
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Start a little before the estimated last one, and let the schedule find it (the
    // interval is not constant for schedules like `30 6-16/4 * * 1-5`).
    let mut t = Timestamp::from_second(t1.as_second() + (missed - 2) * between).ok();
    let mut recent = None;
    while let Some(next) = t.and_then(|t| schedule.next(t)).filter(|n| *n <= now) {
        recent = Some(next);
        t = Some(next);
    }
    let kind = match missed {
        n if n > 100 => Missed::Many,
        n if n > 1 => Missed::Few,
        _ => Missed::None,
    };
    Ok((earliest, recent, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn next(schedule: &str, zone: &str, from: &str) -> Option<String> {
        let s = Schedule::parse(schedule, zone).expect("parses");
        s.next(at(from)).map(|t| t.to_string())
    }

    #[test]
    fn next_follows_each_field() {
        assert_eq!(
            next("* * * * *", "", "2024-01-01T00:00:30Z").as_deref(),
            Some("2024-01-01T00:01:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", "", "2024-01-01T00:15:00Z").as_deref(),
            Some("2024-01-01T00:30:00Z")
        );
        assert_eq!(
            next("0 9 * * mon-fri", "", "2024-01-05T10:00:00Z").as_deref(),
            Some("2024-01-08T09:00:00Z")
        );
        assert_eq!(
            next("@hourly", "", "2024-01-01T23:59:00Z").as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
        assert_eq!(
            next("@yearly", "", "2024-03-01T00:00:00Z").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            next("0 0 29 feb *", "", "2024-03-01T00:00:00Z").as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            next("30 6-16/4 * * *", "", "2024-01-01T11:00:00Z").as_deref(),
            Some("2024-01-01T14:30:00Z")
        );
        assert_eq!(
            next("@every 90s", "", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-01T00:01:30Z")
        );
        assert_eq!(next("0 0 31 2 *", "", "2024-01-01T00:00:00Z"), None, "never: gives up");
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th, or any Friday (robfig's and Vixie cron's rule).
        assert_eq!(
            next("0 0 13 * fri", "", "2024-01-06T00:00:00Z").as_deref(),
            Some("2024-01-12T00:00:00Z")
        );
        // With a star in one, both must match: every Friday.
        assert_eq!(
            next("0 0 * * 5", "", "2024-01-06T00:00:00Z").as_deref(),
            Some("2024-01-12T00:00:00Z")
        );
    }

    #[test]
    fn time_zones_shift_the_activations() {
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-01T14:00:00Z")
        );
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2024-07-01T00:00:00Z").as_deref(),
            Some("2024-07-01T13:00:00Z")
        );
        assert_eq!(
            next("TZ=Asia/Kolkata 0 0 * * *", "", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-01T18:30:00Z")
        );
        // 02:30 does not exist on 2024-03-10 in New York: it runs an hour later.
        assert_eq!(
            next("30 2 * * *", "America/New_York", "2024-03-10T05:00:00Z").as_deref(),
            Some("2024-03-10T07:30:00Z")
        );
        assert!(Schedule::parse("* * * * *", "Mars/Olympus").is_err());
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@reboot",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad, "").is_err(), "{bad}");
        }
        assert!(Schedule::parse("0 0 ? JAN,Dec SUN", "").is_ok());
    }

    #[test]
    fn most_recent_runs_the_last_missed_only() {
        let hourly = Schedule::parse("0 * * * *", "").unwrap();
        let created = at("2024-01-01T10:30:00Z");
        let (_, recent, missed) =
            most_recent(&hourly, created, at("2024-01-01T10:59:00Z"), None).unwrap();
        assert_eq!((recent, missed), (None, Missed::None), "nothing due yet");
        let (_, recent, missed) =
            most_recent(&hourly, created, at("2024-01-01T11:00:05Z"), None).unwrap();
        assert_eq!((recent, missed), (Some(at("2024-01-01T11:00:00Z")), Missed::None));
        let (_, recent, missed) =
            most_recent(&hourly, created, at("2024-01-01T14:20:00Z"), None).unwrap();
        assert_eq!((recent, missed), (Some(at("2024-01-01T14:00:00Z")), Missed::Few));
        let (_, recent, missed) =
            most_recent(&hourly, created, at("2024-01-10T14:20:00Z"), None).unwrap();
        assert_eq!(
            (recent, missed),
            (Some(at("2024-01-10T14:00:00Z")), Missed::Many),
            "over 100 hours"
        );
        // A starting deadline moves the earliest time up, so old misses are not counted.
        let (earliest, recent, missed) =
            most_recent(&hourly, created, at("2024-01-10T14:20:00Z"), Some(3600)).unwrap();
        assert_eq!(earliest, at("2024-01-10T13:20:00Z"));
        assert_eq!((recent, missed), (Some(at("2024-01-10T14:00:00Z")), Missed::None));
        let every = Schedule::parse("@every 1h", "").unwrap();
        let (_, recent, _) =
            most_recent(&every, created, at("2024-01-01T13:40:00Z"), None).unwrap();
        assert_eq!(
            recent,
            Some(at("2024-01-01T13:30:00Z")),
            "@every counts from the earliest time"
        );
    }

    /// A schedule that never fires (February 31st, upstream's test/cmd events.sh) is an
    /// invalid one, as upstream finds with robfig's zero time: the controller warns
    /// `InvalidSchedule`.
    #[test]
    fn a_schedule_that_never_fires_is_invalid() {
        let never = Schedule::parse("59 23 31 2 *", "").unwrap();
        let created = at("2024-01-01T10:30:00Z");
        assert_eq!(
            most_recent(&never, created, at("2024-01-01T11:00:00Z"), None),
            Err("time difference between two schedules is less than 1 second".to_owned())
        );
    }
}
