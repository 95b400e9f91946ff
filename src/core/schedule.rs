//! Item schedules: "days of the week plus a frequency" (DESIGN.md "Config"), parsed from the
//! config's `schedule` field, and the pure question the daemon asks of them: when is the next run?
//! No clock and no I/O here: the current time (and with it the time zone) is always passed in.
//!
//! # Grammar
//! Case-insensitive; whitespace is free around words, `,` and `-`.
//! ```text
//! schedule  = [days] frequency
//! days      = "daily" | item ("," item)*
//! item      = day | day "-" day | "weekdays" | "weekends"
//! day       = mon | tue | wed | thu | fri | sat | sun | monday | ... | sunday
//! frequency = "every" N ("s" | "m" | "h")      1 s ..= 24 h
//!           | "at" time ("," time)*            time = H:MM or HH:MM, 00:00 ..= 23:59
//! ```
//! No days means every day. A range may wrap around the week (`fri-mon`). Examples:
//! `every 15m`, `mon-fri every 15m`, `daily at 02:30`, `sat,sun at 03:00,15:00`, `fri-mon at 9:05`.
//!
//! # When a schedule is due
//! Every due time belongs to one local date D (in the time zone of the instant handed to
//! [`Schedule::next_after`]), and only dates whose weekday is allowed have due times.
//! - `at T`: the instant at which the wall clock first reads D T. A time skipped by a DST
//!   spring-forward (02:30 in Prague on the last Sunday of March) runs once, at the first instant
//!   after the gap (03:00), like cron running a skipped job right after the change; a time repeated
//!   by a fall-back (02:30 on the last Sunday of October) runs once, at its first occurrence.
//!   Several times inside one gap run once together.
//! - `every N`: the instants m(D) + k*N for k = 0, 1, ... that lie before m(D+1), where m(D) is the
//!   local midnight of D: the first instant at which the wall clock reads D 00:00 or later (so a
//!   zone that skips midnight, like Sao Paulo's old DST starts, begins the day at 01:00). The slots
//!   are real elapsed time, so `every 15m` runs at :00 :15 :30 :45 and a 23 h or 25 h DST day has
//!   correspondingly fewer or more runs; no instant is ever due twice.
//!
//! D is the local date of the due instant itself except where a zone skips a whole date or sets
//! its clock back across midnight (Samoa skipped Friday 2011-12-30: a Friday `at` time ran at the
//! first instant after the gap, Saturday 00:00). No zone in use today does either.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Weekday};

/// The longest `every` interval: one run per day, at local midnight.
const MAX_INTERVAL_SECONDS: u32 = 24 * 60 * 60;

/// How many local dates past the current one [`Schedule::next_after`] looks at: a week reaches
/// every weekday, one more date covers a date a zone skips entirely, the rest is slack.
const SEARCH_DAYS: i64 = 14;

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// One bit per weekday, bit 0 = Monday.
const ALL_DAYS: u8 = 0b111_1111;
const WEEKDAYS: u8 = 0b001_1111;
const WEEKENDS: u8 = 0b110_0000;

/// When an item runs: a set of weekdays (never empty) and a [`Frequency`] on those days.
///
/// Parse it with [`str::parse`]; [`Display`](fmt::Display) prints the canonical form, which parses
/// back to an equal schedule. See the module documentation for the exact due times.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// Bit `n` allows the weekday `n` days from Monday; at least one bit is set.
    days: u8,
    frequency: Frequency,
}

/// What runs on an allowed day.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frequency {
    /// Every this many seconds (1 ..= 86400) of real time, counted from each allowed day's local
    /// midnight; the last slot of a day lies before the next local midnight.
    Every { seconds: u32 },
    /// At these local wall-clock times: at least one, sorted, without duplicates.
    At(Vec<NaiveTime>),
}

/// A schedule that does not parse; `reason` names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {spec:?}: {reason}")]
pub struct ScheduleError {
    pub spec: String,
    pub reason: String,
}

impl Schedule {
    /// Whether the schedule has due times on local dates with this weekday.
    pub fn runs_on(&self, day: Weekday) -> bool {
        self.days & day_bit(day) != 0
    }

    pub fn frequency(&self) -> &Frequency {
        &self.frequency
    }

    /// The first due time strictly after `after`, in the time zone of `after`.
    ///
    /// The due times are a fixed set of instants (module documentation), so this is monotonic:
    /// `t1 <= t2` implies `next_after(t1) <= next_after(t2)`. A daemon that calls it with the last
    /// due time (or now) runs a slot missed while the machine slept once, not once per slot.
    ///
    /// # Panics
    /// Only if the next due time is beyond what chrono can represent (the year 262142).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> DateTime<Tz> {
        let tz = after.timezone();
        let today = after.date_naive();
        // Slots of the day before can be due after `after`: a time in a gap just before midnight
        // runs at the first instant of the next date.
        (-1..=SEARCH_DAYS)
            .filter_map(|n| today.checked_add_signed(TimeDelta::days(n)))
            .filter(|date| self.runs_on(date.weekday()))
            .filter_map(|date| self.first_slot_after(&tz, date, after))
            .min()
            // Unreachable with a real zone: it would have to skip two whole weeks of dates.
            .unwrap_or_else(|| after.clone() + TimeDelta::days(1))
    }

    /// The earliest due time of local date `date` that is strictly after `after`.
    fn first_slot_after<Tz: TimeZone>(&self, tz: &Tz, date: NaiveDate, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        match &self.frequency {
            Frequency::At(times) => {
                times.iter().filter_map(|&time| first_instant_reading(tz, date.and_time(time))).find(|due| due > after)
            }
            Frequency::Every { seconds } => {
                let step = i64::from(*seconds);
                let start = first_instant_reading(tz, date.and_time(NaiveTime::MIN))?;
                let end = first_instant_reading(tz, date.succ_opt()?.and_time(NaiveTime::MIN))?;
                let due = if *after < start {
                    start
                } else {
                    // Whole seconds of elapsed time, rounded down: the next slot is one step on.
                    let elapsed = after.clone().signed_duration_since(&start).num_seconds();
                    start.checked_add_signed(TimeDelta::seconds((elapsed / step + 1) * step))?
                };
                (due < end).then_some(due)
            }
        }
    }
}

fn day_bit(day: Weekday) -> u8 {
    1 << day.num_days_from_monday()
}

/// The first instant at which the wall clock of `tz` reads `local` or later: the instant itself
/// when `local` exists, its first occurrence when a fall-back repeats it, and the end of the gap
/// when a spring-forward skips it. `None` only at the ends of chrono's range.
fn first_instant_reading<Tz: TimeZone>(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    if let Some(instant) = tz.from_local_datetime(&local).earliest() {
        return Some(instant);
    }
    // In a gap. The wall clock of a UTC second `s` reads `s + offset(s)`; offsets are less than a
    // day either way, so the wall clock reads before `local` a day before it (as if it were UTC)
    // and after it a day later. Bisect for the second at which it first reads `local` or later.
    const DAY: i64 = 24 * 60 * 60;
    let target = local.and_utc().timestamp();
    let wall = |utc: i64| -> Option<i64> {
        let naive = DateTime::from_timestamp(utc, 0)?.naive_utc();
        Some(utc + i64::from(tz.offset_from_utc_datetime(&naive).fix().local_minus_utc()))
    };
    let (mut before, mut reached) = (target - DAY - 1, target + DAY);
    while reached - before > 1 {
        let middle = before + (reached - before) / 2;
        if wall(middle)? >= target {
            reached = middle;
        } else {
            before = middle;
        }
    }
    Some(tz.from_utc_datetime(&DateTime::from_timestamp(reached, 0)?.naive_utc()))
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(spec: &str) -> Result<Schedule, ScheduleError> {
        parse(&spec.to_lowercase()).map_err(|reason| ScheduleError { spec: spec.to_string(), reason })
    }
}

const EXAMPLES: &str = "e.g. \"mon-fri every 15m\" or \"daily at 02:30\"";

fn parse(spec: &str) -> Result<Schedule, String> {
    let mut words = Words::new(spec);
    let days = match words.peek() {
        None => return Err(format!("empty schedule; expected {EXAMPLES}")),
        Some("daily") => {
            words.next();
            Some(ALL_DAYS)
        }
        Some(word) if day_set(word).is_some() => Some(parse_days(&mut words)?),
        Some(_) => None,
    };
    let frequency = match words.next() {
        Some("every") => Frequency::Every { seconds: parse_interval(&mut words)? },
        Some("at") => Frequency::At(parse_times(&mut words)?),
        None => return Err("missing frequency after the days: add \"every N(s|m|h)\" or \"at HH:MM\"".to_string()),
        Some(word) if days.is_some() => {
            return Err(format!("expected \"every\" or \"at\" after the days, found {word:?}"))
        }
        // A word followed by what follows a day was most likely meant as one.
        Some(word) if matches!(words.peek(), Some("," | "-" | "every" | "at")) => {
            return Err(format!("unknown day {word:?} (use mon..sun, monday..sunday, weekdays, weekends or daily)"))
        }
        Some(word) => return Err(format!("unknown word {word:?}; expected {EXAMPLES}")),
    };
    match words.next() {
        None => Ok(Schedule { days: days.unwrap_or(ALL_DAYS), frequency }),
        Some(word @ ("every" | "at")) => {
            Err(format!("{word:?} after \"{frequency}\": a schedule has one frequency, either \"every\" or \"at\""))
        }
        Some(word) => Err(format!("unexpected {word:?} after \"{frequency}\"")),
    }
}

/// The words of a lowercased spec: runs of anything but whitespace, `,` and `-`, which are words
/// of their own.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(spec: &'a str) -> Words<'a> {
        Words { rest: spec }
    }

    fn peek(&self) -> Option<&'a str> {
        let rest = self.rest.trim_start();
        let first = rest.chars().next()?;
        let len = match first {
            ',' | '-' => 1,
            _ => rest.find(|c: char| c.is_whitespace() || c == ',' || c == '-').unwrap_or(rest.len()),
        };
        Some(&rest[..len])
    }

    fn next(&mut self) -> Option<&'a str> {
        let word = self.peek()?;
        let rest = self.rest.trim_start();
        self.rest = &rest[word.len()..];
        Some(word)
    }
}

/// The days a single word names: a day, `weekdays` or `weekends`.
fn day_set(word: &str) -> Option<u8> {
    match word {
        "weekdays" => Some(WEEKDAYS),
        "weekends" => Some(WEEKENDS),
        _ => day_index(word).map(|n| 1 << n),
    }
}

fn day_index(word: &str) -> Option<u32> {
    DAY_NAMES.iter().position(|&(short, long)| word == short || word == long).map(|n| n as u32)
}

fn parse_days(words: &mut Words) -> Result<u8, String> {
    let mut days = 0;
    loop {
        let word = match words.next() {
            None => return Err("missing a day after \",\"".to_string()),
            Some(word) => word,
        };
        let Some(set) = day_set(word) else {
            return Err(format!("unknown day {word:?} (use mon..sun, monday..sunday, weekdays or weekends)"));
        };
        if words.peek() == Some("-") {
            words.next();
            days |= parse_range(word, words)?;
        } else {
            days |= set;
        }
        if words.peek() != Some(",") {
            return Ok(days);
        }
        words.next();
    }
}

/// The rest of a range `first-last`, wrapping around the week when `last` comes before `first`.
fn parse_range(first: &str, words: &mut Words) -> Result<u8, String> {
    let last = words.next().unwrap_or_default();
    let range = format!("{first}-{last}");
    let (Some(from), Some(to)) = (day_index(first), day_index(last)) else {
        return Err(format!("bad day range {range:?}: expected two days, e.g. \"mon-fri\" or \"fri-mon\""));
    };
    if from == to {
        return Err(format!("bad day range {range:?}: it starts and ends on the same day"));
    }
    if words.peek() == Some("-") {
        return Err(format!("bad day range \"{range}-...\": a range has two ends"));
    }
    let mut days = 0;
    let mut day = from;
    loop {
        days |= 1 << day;
        if day == to {
            return Ok(days);
        }
        day = (day + 1) % 7;
    }
}

fn parse_interval(words: &mut Words) -> Result<u32, String> {
    const EXAMPLE: &str = "e.g. \"every 15m\"";
    let word = words.next().unwrap_or_default();
    let split = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let (number, mut unit) = word.split_at(split);
    if number.is_empty() {
        return Err(format!("missing interval after \"every\"; expected {EXAMPLE}"));
    }
    let mut written = word.to_string();
    if unit.is_empty() {
        unit = match words.peek() {
            Some(unit @ ("s" | "m" | "h")) => words.next().unwrap_or(unit),
            _ => return Err(format!("interval {word:?} has no unit; use s, m or h, {EXAMPLE}")),
        };
        written = format!("{number}{unit}");
    }
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        _ => return Err(format!("bad interval unit {unit:?} in {written:?}; use s, m or h")),
    };
    let seconds = number.parse::<u64>().ok().and_then(|n| n.checked_mul(scale));
    match seconds {
        Some(0) => Err(format!("zero interval {written:?}")),
        Some(seconds) if seconds <= u64::from(MAX_INTERVAL_SECONDS) => Ok(seconds as u32),
        _ => Err(format!("interval {written:?} is longer than 24h")),
    }
}

fn parse_times(words: &mut Words) -> Result<Vec<NaiveTime>, String> {
    let mut times = Vec::new();
    loop {
        match words.next() {
            None | Some(",") => return Err("missing time after \"at\" or \",\"; expected HH:MM".to_string()),
            Some(word) => times.push(parse_time(word)?),
        }
        if words.peek() != Some(",") {
            break;
        }
        words.next();
    }
    times.sort();
    times.dedup();
    Ok(times)
}

fn parse_time(word: &str) -> Result<NaiveTime, String> {
    let bad = || format!("bad time {word:?}: expected H:MM or HH:MM from 00:00 to 23:59");
    let (hour, minute) = word.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str, lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hour, 1..=2) || !digits(minute, 2..=2) {
        return Err(bad());
    }
    let (hour, minute) = (hour.parse().map_err(|_| bad())?, minute.parse().map_err(|_| bad())?);
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(bad)
}

impl fmt::Display for Schedule {
    /// The canonical form: days as `daily`, single days and ranges (`mon,wed,fri`, `mon-fri`,
    /// `fri-mon`), then the frequency; `every` on all days drops the `daily`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.days, &self.frequency) {
            (ALL_DAYS, Frequency::Every { .. }) => write!(f, "{}", self.frequency),
            (ALL_DAYS, Frequency::At(_)) => write!(f, "daily {}", self.frequency),
            (days, frequency) => write!(f, "{} {frequency}", days_text(days)),
        }
    }
}

/// Days as runs of consecutive weekdays, Monday first, except that a run of three or more days
/// across Sunday-Monday is written last as one wrapping range (`fri-mon`).
fn days_text(days: u8) -> String {
    // Runs as (first, last) day indexes, in Monday..Sunday order.
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for day in (0..7).filter(|day| days & (1 << day) != 0) {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == day => *last = day,
            _ => runs.push((day, day)),
        }
    }
    let length = |(first, last): (u32, u32)| (last + 7 - first) % 7 + 1;
    if let [(0, monday_end), .., (sunday_start, 6)] = runs[..] {
        if length((sunday_start, monday_end)) >= 3 {
            runs.remove(0);
            *runs.last_mut().expect("two runs") = (sunday_start, monday_end);
        }
    }
    let name = |day: u32| DAY_NAMES[day as usize].0;
    let texts: Vec<String> = runs
        .into_iter()
        .map(|run| match length(run) {
            1 => name(run.0).to_string(),
            2 => format!("{},{}", name(run.0), name(run.1)),
            _ => format!("{}-{}", name(run.0), name(run.1)),
        })
        .collect();
    texts.join(",")
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frequency::Every { seconds } if seconds % 3600 == 0 => write!(f, "every {}h", seconds / 3600),
            Frequency::Every { seconds } if seconds % 60 == 0 => write!(f, "every {}m", seconds / 60),
            Frequency::Every { seconds } => write!(f, "every {seconds}s"),
            Frequency::At(times) => {
                let times: Vec<String> = times.iter().map(|time| time.format("%H:%M").to_string()).collect();
                write!(f, "at {}", times.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Timelike, Utc};
    use chrono_tz::America::{New_York, Sao_Paulo};
    use chrono_tz::Europe::Prague;
    use chrono_tz::Pacific::Apia;

    fn schedule(spec: &str) -> Schedule {
        spec.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A local wall-clock time that exists once, or the first occurrence of a repeated one.
    fn local<Tz: TimeZone>(tz: &Tz, (y, mo, d): (i32, u32, u32), (h, mi): (u32, u32)) -> DateTime<Tz> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap_or_else(|| panic!("{y}-{mo}-{d} {h}:{mi} exists"))
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        local(&Utc, (y, mo, d), (h, mi))
    }

    /// The wall clock and offset of an instant, e.g. "2026-03-29 03:00 +02:00".
    fn wall<Tz: TimeZone>(t: &DateTime<Tz>) -> String
    where
        Tz::Offset: fmt::Display,
    {
        t.format("%Y-%m-%d %H:%M %:z").to_string()
    }

    /// Every due time in [from, until).
    fn runs<Tz: TimeZone>(s: &Schedule, from: &DateTime<Tz>, until: &DateTime<Tz>) -> Vec<DateTime<Tz>> {
        let mut due = Vec::new();
        let mut t = s.next_after(&(from.clone() - TimeDelta::nanoseconds(1)));
        while t < *until {
            due.push(t.clone());
            t = s.next_after(&t);
        }
        due
    }

    /// Each due time in `runs` as a wall clock string.
    fn walls<Tz: TimeZone>(runs: &[DateTime<Tz>]) -> Vec<String>
    where
        Tz::Offset: fmt::Display,
    {
        runs.iter().map(wall).collect()
    }

    #[test]
    fn parses_good_specs_to_their_canonical_form() {
        let cases = [
            ("every 15m", "every 15m"),
            ("every 2h", "every 2h"),
            ("every 30s", "every 30s"),
            ("every 90m", "every 90m"),
            ("every 120m", "every 2h"),
            ("every 3600s", "every 1h"),
            ("every 24h", "every 24h"),
            ("every 15 m", "every 15m"),
            ("  EVERY   15M  ", "every 15m"),
            ("daily every 1h", "every 1h"),
            ("mon-fri every 15m", "mon-fri every 15m"),
            ("Mon - Fri every 15m", "mon-fri every 15m"),
            ("weekdays every 15m", "mon-fri every 15m"),
            ("weekends at 03:00", "sat,sun at 03:00"),
            ("sat,sun at 03:00,15:00", "sat,sun at 03:00,15:00"),
            ("sat , sun at 15:00 , 03:00", "sat,sun at 03:00,15:00"),
            ("sun,sat at 03:00,03:00", "sat,sun at 03:00"),
            ("daily at 02:30", "daily at 02:30"),
            ("at 02:30", "daily at 02:30"),
            ("mon,tue,wed,thu,fri,sat,sun at 02:30", "daily at 02:30"),
            ("weekdays,weekends every 1h", "every 1h"),
            ("mon,wed,fri at 08:00", "mon,wed,fri at 08:00"),
            ("mon-fri at 9:05", "mon-fri at 09:05"),
            ("monday-friday at 0:00,23:59", "mon-fri at 00:00,23:59"),
            ("fri-mon at 12:00", "fri-mon at 12:00"),
            ("sun-tue at 12:00", "sun-tue at 12:00"),
            ("sun,mon at 12:00", "mon,sun at 12:00"),
            ("mon,tue,wed,fri every 1h", "mon-wed,fri every 1h"),
            ("mon,tue,wed,fri,sun every 1h", "fri,sun-wed every 1h"),
            ("wed,fri-mon at 12:00", "wed,fri-mon at 12:00"),
            ("sat-fri every 1h", "every 1h"),
            ("Tuesday,THURSDAY at 7:00", "tue,thu at 07:00"),
        ];
        for (spec, canonical) in cases {
            let parsed = schedule(spec);
            assert_eq!(parsed.to_string(), canonical, "display of {spec:?}");
            assert_eq!(schedule(canonical), parsed, "round trip of {spec:?}");
        }
    }

    #[test]
    fn rejects_bad_specs_naming_the_bad_part() {
        let cases = [
            ("", "empty schedule"),
            ("   ", "empty schedule"),
            ("mon-fri", "missing frequency"),
            ("daily", "missing frequency"),
            ("monx every 1h", "unknown day \"monx\""),
            ("mon,funday at 02:00", "unknown day \"funday\""),
            ("mon, every 1h", "unknown day \"every\""),
            ("mon,", "missing a day after \",\""),
            ("mon-funday at 02:00", "bad day range \"mon-funday\""),
            ("mon- every 1h", "bad day range \"mon-every\""),
            ("mon-mon at 02:00", "starts and ends on the same day"),
            ("mon-wed-fri at 02:00", "a range has two ends"),
            ("weekdays-sun at 02:00", "bad day range \"weekdays-sun\""),
            ("at 24:00", "bad time \"24:00\""),
            ("at 7:60", "bad time \"7:60\""),
            ("at 7", "bad time \"7\""),
            ("at 7:5", "bad time \"7:5\""),
            ("at 007:00", "bad time \"007:00\""),
            ("at +7:00", "bad time \"+7:00\""),
            ("at", "missing time"),
            ("at 02:00,", "missing time"),
            ("at 02:00,,03:00", "missing time"),
            ("every 0m", "zero interval \"0m\""),
            ("every 0 s", "zero interval \"0s\""),
            ("every m", "missing interval"),
            ("every", "missing interval"),
            ("every 15", "interval \"15\" has no unit"),
            ("every 1d", "bad interval unit \"d\" in \"1d\""),
            ("every 1.5h", "bad interval unit \".5h\""),
            ("every 25h", "interval \"25h\" is longer than 24h"),
            ("every 1441m", "interval \"1441m\" is longer than 24h"),
            ("every 99999999999999999999h", "longer than 24h"),
            ("every 1h at 02:00", "\"at\" after \"every 1h\": a schedule has one frequency"),
            ("at 02:00 every 1h", "\"every\" after \"at 02:00\": a schedule has one frequency"),
            ("at 02:00 at 03:00", "a schedule has one frequency"),
            ("hourly", "unknown word \"hourly\""),
            ("mon-fri hourly", "expected \"every\" or \"at\" after the days, found \"hourly\""),
            ("every 1h please", "unexpected \"please\" after \"every 1h\""),
            ("at 02:00 03:00", "unexpected \"03:00\" after \"at 02:00\""),
            ("daily mon at 02:00", "found \"mon\""),
        ];
        for (spec, reason) in cases {
            match spec.parse::<Schedule>() {
                Ok(parsed) => panic!("{spec:?} parsed as {parsed}"),
                Err(e) => {
                    assert_eq!(e.spec, spec);
                    assert!(e.reason.contains(reason), "{spec:?}: {:?} does not contain {reason:?}", e.reason);
                }
            }
        }
    }

    #[test]
    fn error_message_quotes_the_spec_as_written() {
        let e = "Mon-Fri every 0M".parse::<Schedule>().unwrap_err();
        assert_eq!(e.to_string(), "schedule \"Mon-Fri every 0M\": zero interval \"0m\"");
    }

    #[test]
    fn every_day_set_round_trips_through_display() {
        for days in 1..=ALL_DAYS {
            let names: Vec<&str> = (0..7).filter(|n| days & (1 << n) != 0).map(|n| DAY_NAMES[n].1).collect();
            for frequency in ["every 45s", "at 02:30,14:00"] {
                let parsed = schedule(&format!("{} {frequency}", names.join(",")));
                assert_eq!(parsed.days, days);
                assert_eq!(schedule(&parsed.to_string()), parsed, "{parsed}");
            }
        }
    }

    #[test]
    fn every_is_aligned_to_local_midnight() {
        let s = schedule("every 15m");
        assert_eq!(s.next_after(&utc(2026, 5, 6, 10, 7)), utc(2026, 5, 6, 10, 15));
        // Strictly after: a due time is followed by the next slot, also for a fraction past it.
        assert_eq!(s.next_after(&utc(2026, 5, 6, 10, 15)), utc(2026, 5, 6, 10, 30));
        let just_before = utc(2026, 5, 6, 10, 15) - TimeDelta::nanoseconds(1);
        assert_eq!(s.next_after(&just_before), utc(2026, 5, 6, 10, 15));
        let just_after = utc(2026, 5, 6, 10, 15) + TimeDelta::nanoseconds(1);
        assert_eq!(s.next_after(&just_after), utc(2026, 5, 6, 10, 30));
        assert_eq!(s.next_after(&utc(2026, 5, 6, 23, 50)), utc(2026, 5, 7, 0, 0));

        // 90 minutes does not divide a day: every day restarts at midnight, the last slot is 22:30.
        let s = schedule("every 90m");
        assert_eq!(s.next_after(&utc(2026, 5, 6, 21, 0)), utc(2026, 5, 6, 22, 30));
        assert_eq!(s.next_after(&utc(2026, 5, 6, 22, 30)), utc(2026, 5, 7, 0, 0));

        let s = schedule("every 24h");
        assert_eq!(s.next_after(&utc(2026, 5, 6, 0, 0)), utc(2026, 5, 7, 0, 0));

        let s = schedule("every 30s");
        let t = utc(2026, 5, 6, 10, 0);
        assert_eq!(s.next_after(&(t + TimeDelta::seconds(29))), t + TimeDelta::seconds(30));
        assert_eq!(runs(&s, &t, &(t + TimeDelta::minutes(1))).len(), 2);
    }

    #[test]
    fn at_times_run_in_order_then_on_the_next_day() {
        let s = schedule("daily at 15:00,03:00");
        assert_eq!(s.next_after(&utc(2026, 5, 6, 1, 0)), utc(2026, 5, 6, 3, 0));
        assert_eq!(s.next_after(&utc(2026, 5, 6, 3, 0)), utc(2026, 5, 6, 15, 0));
        assert_eq!(s.next_after(&utc(2026, 5, 6, 15, 0)), utc(2026, 5, 7, 3, 0));
        let s = schedule("at 00:00");
        assert_eq!(s.next_after(&utc(2026, 12, 31, 0, 0)), utc(2027, 1, 1, 0, 0));
    }

    #[test]
    fn weekdays_skip_the_weekend() {
        // 2026-05-08 is a Friday.
        let s = schedule("mon-fri every 1h");
        assert_eq!(s.next_after(&utc(2026, 5, 8, 22, 30)), utc(2026, 5, 8, 23, 0));
        assert_eq!(s.next_after(&utc(2026, 5, 8, 23, 0)), utc(2026, 5, 11, 0, 0));
        assert_eq!(s.next_after(&utc(2026, 5, 9, 12, 0)), utc(2026, 5, 11, 0, 0));
        let s = schedule("mon-fri at 9:05");
        assert_eq!(s.next_after(&utc(2026, 5, 8, 10, 0)), utc(2026, 5, 11, 9, 5));
        let week = runs(&s, &utc(2026, 5, 4, 0, 0), &utc(2026, 5, 11, 0, 0));
        assert_eq!(week.len(), 5);
        assert!(week.iter().all(|t| t.weekday() != Weekday::Sat && t.weekday() != Weekday::Sun));
    }

    #[test]
    fn weekends_run_at_each_time() {
        let s = schedule("sat,sun at 03:00,15:00");
        let due = runs(&s, &utc(2026, 5, 4, 0, 0), &utc(2026, 5, 18, 0, 0));
        let expected = [(9, 3), (9, 15), (10, 3), (10, 15), (16, 3), (16, 15), (17, 3), (17, 15)];
        assert_eq!(due, expected.map(|(d, h)| utc(2026, 5, d, h, 0)));
    }

    #[test]
    fn wrapping_range_covers_the_weekend() {
        // 2026-05-05 is a Tuesday, 2026-05-11 a Monday.
        let s = schedule("fri-mon at 12:00");
        assert_eq!(s.next_after(&utc(2026, 5, 5, 8, 0)), utc(2026, 5, 8, 12, 0));
        assert_eq!(s.next_after(&utc(2026, 5, 11, 11, 0)), utc(2026, 5, 11, 12, 0));
        assert_eq!(s.next_after(&utc(2026, 5, 11, 12, 0)), utc(2026, 5, 15, 12, 0));
        let due = runs(&s, &utc(2026, 5, 4, 0, 0), &utc(2026, 5, 18, 0, 0));
        assert_eq!(due.len(), 8);
    }

    #[test]
    fn fixed_offset_uses_its_wall_clock() {
        let india = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        let s = schedule("mon-fri at 02:30");
        // Friday 2026-05-08 20:00 UTC is Saturday 01:30 in India: the next weekday is Monday.
        let after = utc(2026, 5, 8, 20, 0).with_timezone(&india);
        let next = s.next_after(&after);
        assert_eq!(wall(&next), "2026-05-11 02:30 +05:30");
        assert_eq!(next.offset(), &india);

        let brazil = FixedOffset::west_opt(3 * 3600).unwrap();
        let next = schedule("every 45m").next_after(&local(&brazil, (2026, 5, 6), (23, 50)));
        assert_eq!(wall(&next), "2026-05-07 00:00 -03:00");
    }

    #[test]
    fn prague_spring_forward_runs_a_skipped_time_once_after_the_gap() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist.
        let s = schedule("daily at 02:30");
        let due = runs(&s, &local(&Prague, (2026, 3, 28), (0, 0)), &local(&Prague, (2026, 3, 31), (0, 0)));
        assert_eq!(walls(&due), ["2026-03-28 02:30 +01:00", "2026-03-29 03:00 +02:00", "2026-03-30 02:30 +02:00"]);
        // The gap end is the first instant of CEST: 01:00 UTC.
        assert_eq!(due[1], utc(2026, 3, 29, 1, 0));
    }

    #[test]
    fn prague_times_in_one_gap_run_once_together() {
        let s = schedule("daily at 02:10,02:40,03:00,03:05");
        let due = runs(&s, &local(&Prague, (2026, 3, 29), (0, 0)), &local(&Prague, (2026, 3, 30), (0, 0)));
        assert_eq!(walls(&due), ["2026-03-29 03:00 +02:00", "2026-03-29 03:05 +02:00"]);
    }

    #[test]
    fn prague_fall_back_runs_a_repeated_time_once_at_its_first_occurrence() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
        let s = schedule("daily at 02:30");
        let due = runs(&s, &local(&Prague, (2026, 10, 24), (0, 0)), &local(&Prague, (2026, 10, 27), (0, 0)));
        assert_eq!(walls(&due), ["2026-10-24 02:30 +02:00", "2026-10-25 02:30 +02:00", "2026-10-26 02:30 +01:00"]);
        // Between the two occurrences, the next run is the next day's.
        let between = utc(2026, 10, 25, 1, 0).with_timezone(&Prague);
        assert_eq!(wall(&s.next_after(&between)), "2026-10-26 02:30 +01:00");
    }

    #[test]
    fn prague_every_hour_runs_23_24_and_25_times_on_dst_days() {
        let s = schedule("every 1h");
        let day = |d: (i32, u32, u32), next: (i32, u32, u32)| {
            runs(&s, &local(&Prague, d, (0, 0)), &local(&Prague, next, (0, 0)))
        };
        let spring = day((2026, 3, 29), (2026, 3, 30));
        assert_eq!(spring.len(), 23);
        assert_eq!(wall(&spring[2]), "2026-03-29 03:00 +02:00");
        assert_eq!(day((2026, 3, 30), (2026, 3, 31)).len(), 24);
        let fall = day((2026, 10, 25), (2026, 10, 26));
        assert_eq!(fall.len(), 25);
        assert_eq!(wall(&fall[2]), "2026-10-25 02:00 +02:00");
        assert_eq!(wall(&fall[3]), "2026-10-25 02:00 +01:00");
        assert_eq!(wall(&fall[24]), "2026-10-25 23:00 +01:00");
    }

    #[test]
    fn prague_every_15m_has_no_duplicates_across_fall_back() {
        let s = schedule("every 15m");
        let fall = runs(&s, &local(&Prague, (2026, 10, 25), (0, 0)), &local(&Prague, (2026, 10, 26), (0, 0)));
        assert_eq!(fall.len(), 25 * 4);
        assert!(fall.windows(2).all(|pair| pair[1] - pair[0] == TimeDelta::minutes(15)));
        assert!(fall.iter().all(|t| t.minute() % 15 == 0 && t.second() == 0));
        let spring = runs(&s, &local(&Prague, (2026, 3, 29), (0, 0)), &local(&Prague, (2026, 3, 30), (0, 0)));
        assert_eq!(spring.len(), 23 * 4);
    }

    #[test]
    fn new_york_dst_days() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT; 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let s = schedule("sun at 02:30");
        assert_eq!(wall(&s.next_after(&local(&New_York, (2026, 3, 7), (12, 0)))), "2026-03-08 03:00 -04:00");
        let s = schedule("sun at 01:30");
        let first = s.next_after(&local(&New_York, (2026, 11, 1), (0, 0)));
        assert_eq!(wall(&first), "2026-11-01 01:30 -04:00");
        assert_eq!(wall(&s.next_after(&first)), "2026-11-08 01:30 -05:00");
        let s = schedule("every 1h");
        let fall = runs(&s, &local(&New_York, (2026, 11, 1), (0, 0)), &local(&New_York, (2026, 11, 2), (0, 0)));
        assert_eq!(fall.len(), 25);
    }

    #[test]
    fn sao_paulo_day_without_midnight_starts_at_the_first_valid_instant() {
        // 2018-11-04: 00:00 -03 became 01:00 -02, so that Sunday had no midnight.
        let s = schedule("every 1h");
        let from = local(&Sao_Paulo, (2018, 11, 3), (23, 30));
        let day = runs(&s, &from, &local(&Sao_Paulo, (2018, 11, 5), (0, 0)));
        assert_eq!(wall(&day[0]), "2018-11-04 01:00 -02:00");
        assert_eq!(day.len(), 23);
        let s = schedule("sun at 00:00,00:30,01:00");
        let day = runs(&s, &from, &local(&Sao_Paulo, (2018, 11, 5), (0, 0)));
        assert_eq!(walls(&day), ["2018-11-04 01:00 -02:00"]);
    }

    #[test]
    fn apia_skipped_friday_runs_its_times_at_the_first_instant_after() {
        // Samoa jumped from Thursday 2011-12-29 24:00 to Saturday 2011-12-31 00:00.
        let s = schedule("fri at 10:00");
        let next = s.next_after(&local(&Apia, (2011, 12, 29), (12, 0)));
        assert_eq!(wall(&next), "2011-12-31 00:00 +14:00");
        assert_eq!(wall(&s.next_after(&next)), "2012-01-06 10:00 +14:00");
        // A date without an instant has no `every` slots.
        let s = schedule("fri every 1h");
        assert_eq!(wall(&s.next_after(&local(&Apia, (2011, 12, 29), (12, 0)))), "2012-01-06 00:00 +14:00");
    }

    /// Checks the invariants of `next_after` at many instants over 2026, in steps of a few hours
    /// plus a pseudo-random remainder, so DST changes and every weekday are crossed.
    fn check_properties<Tz: TimeZone>(tz: &Tz)
    where
        Tz::Offset: fmt::Display,
    {
        let specs = [
            "every 15m",
            "every 7m",
            "mon-fri every 1h",
            "every 24h",
            "sat,sun at 03:00,15:00",
            "daily at 02:30",
            "fri-mon at 00:00,02:00,23:59",
            "wed every 90m",
        ];
        for spec in specs {
            let s = schedule(spec);
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut t = local(tz, (2026, 1, 1), (0, 0));
            let end = local(tz, (2027, 1, 1), (0, 0));
            let mut previous: Option<(DateTime<Tz>, DateTime<Tz>)> = None;
            while t < end {
                let next = s.next_after(&t);
                let label = format!("{spec:?} after {}", wall(&t));
                assert!(next > t, "{label}: {} is not after", wall(&next));
                assert!(s.runs_on(next.weekday()), "{label}: {} is not on an allowed day", wall(&next));
                assert!(next.clone() - t.clone() <= TimeDelta::days(8), "{label}: {} is too far", wall(&next));
                if let Some((before, its_next)) = &previous {
                    assert!(before < &t && its_next <= &next, "{label}: not monotonic");
                }
                // Nothing is due between t and next: one second before next still leads to next.
                let late = next.clone() - TimeDelta::seconds(1);
                if late > t {
                    assert_eq!(s.next_after(&late), next, "{label}: a due time was skipped");
                }
                previous = Some((t.clone(), next));
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                t += TimeDelta::hours(3) + TimeDelta::seconds((seed >> 33) as i64 % 7200);
            }
        }
    }

    #[test]
    fn properties_hold_over_a_year_in_prague() {
        check_properties(&Prague);
    }

    #[test]
    fn properties_hold_over_a_year_in_new_york() {
        check_properties(&New_York);
    }

    #[test]
    fn properties_hold_over_a_year_in_utc_and_a_fixed_offset() {
        check_properties(&Utc);
        check_properties(&FixedOffset::east_opt(-(9 * 3600 + 1800)).unwrap());
    }
}
