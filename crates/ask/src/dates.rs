//! Date ranges, resolved by code from the day the question is asked. The
//! model only ever writes `last_summer`; which days that means is decided
//! here, the same way every time, and shown with the answer.
//!
//! Definitions (northern hemisphere, meteorological seasons):
//!
//! - spring is March to May, summer June to August, autumn September to
//!   November, winter December to the end of February (so a winter spans
//!   a year end, and ends on the 29th in leap years);
//! - `this_SEASON` is the one under way today; otherwise the one that
//!   starts in today's year (on 2024-03-01 `this_summer` is summer 2024,
//!   still to come; on 2024-09-10 it is summer 2024, just past);
//! - `last_SEASON` is the latest one that ended before today (on
//!   2024-03-01 `last_winter` is 2023-12-01..2024-02-29 and `last_summer`
//!   2023-06-01..2023-08-31; on 2024-07-15 `last_summer` is summer 2023);
//! - weeks run Monday to Sunday; `last N days` is the N days ending today
//!   (today included), `last N weeks` the 7N days ending today, `last N
//!   months` the days after the same date N months ago (clamped to the
//!   month's end) up to today;
//! - every range includes both its first and last day.

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::Serialize;

use crate::ast::{NamedRange, Range, Season, Unit};

/// Days from `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DateSpan {
    /// First day.
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub from: NaiveDate,
    /// Last day.
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub to: NaiveDate,
}

impl DateSpan {
    fn new(from: NaiveDate, to: NaiveDate) -> Self {
        DateSpan { from, to }
    }
}

impl std::fmt::Display for DateSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to {}",
            self.from.format("%Y-%m-%d"),
            self.to.format("%Y-%m-%d")
        )
    }
}

/// Why a range has no days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeProblem {
    /// `between A and B` with B before A.
    Backwards,
    /// Beyond the calendar chrono can represent.
    Overflow,
}

fn ymd(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, day)
}

fn month_span(year: i32, month: u32) -> Option<DateSpan> {
    let from = ymd(year, month, 1)?;
    let to = from.checked_add_months(Months::new(1))?.pred_opt()?;
    Some(DateSpan::new(from, to))
}

fn year_span(year: i32) -> Option<DateSpan> {
    Some(DateSpan::new(ymd(year, 1, 1)?, ymd(year, 12, 31)?))
}

/// The occurrence of `season` that starts in `year` (winter: December of
/// `year` to the end of February of `year + 1`).
fn season_starting(season: Season, year: i32) -> Option<DateSpan> {
    let (start_month, end_year, end_month) = match season {
        Season::Spring => (3, year, 5),
        Season::Summer => (6, year, 8),
        Season::Autumn => (9, year, 11),
        Season::Winter => (12, year.checked_add(1)?, 2),
    };
    Some(DateSpan::new(
        ymd(year, start_month, 1)?,
        month_span(end_year, end_month)?.to,
    ))
}

fn this_season(season: Season, today: NaiveDate) -> Option<DateSpan> {
    // The winter under way in January or February started last year.
    let previous = season_starting(season, today.year().checked_sub(1)?)?;
    if previous.from <= today && today <= previous.to {
        return Some(previous);
    }
    season_starting(season, today.year())
}

fn last_season(season: Season, today: NaiveDate) -> Option<DateSpan> {
    let mut year = today.year();
    // At most two steps back: a season lasts three months.
    for _ in 0..3 {
        let span = season_starting(season, year)?;
        if span.to < today {
            return Some(span);
        }
        year = year.checked_sub(1)?;
    }
    None
}

fn named(named: NamedRange, today: NaiveDate) -> Option<DateSpan> {
    let day = |date: NaiveDate| Some(DateSpan::new(date, date));
    match named {
        NamedRange::Today => day(today),
        NamedRange::Yesterday => day(today.pred_opt()?),
        NamedRange::ThisWeek | NamedRange::LastWeek => {
            let monday = today
                .checked_sub_days(Days::new(u64::from(today.weekday().num_days_from_monday())))?;
            let monday = if named == NamedRange::LastWeek {
                monday.checked_sub_days(Days::new(7))?
            } else {
                monday
            };
            Some(DateSpan::new(
                monday,
                monday.checked_add_days(Days::new(6))?,
            ))
        }
        NamedRange::ThisMonth => month_span(today.year(), today.month()),
        NamedRange::LastMonth => {
            let earlier = today.with_day(1)?.checked_sub_months(Months::new(1))?;
            month_span(earlier.year(), earlier.month())
        }
        NamedRange::ThisYear => year_span(today.year()),
        NamedRange::LastYear => year_span(today.year().checked_sub(1)?),
        NamedRange::This(season) => this_season(season, today),
        NamedRange::Last(season) => last_season(season, today),
    }
}

fn past(n: u32, unit: Unit, today: NaiveDate) -> Option<DateSpan> {
    let from = match unit {
        Unit::Days => today.checked_sub_days(Days::new(u64::from(n).checked_sub(1)?))?,
        Unit::Weeks => {
            today.checked_sub_days(Days::new(u64::from(n).checked_mul(7)?.checked_sub(1)?))?
        }
        Unit::Months => today.checked_sub_months(Months::new(n))?.succ_opt()?,
    };
    Some(DateSpan::new(from, today))
}

/// The days `range` means when asked on `today`.
pub(crate) fn resolve(range: &Range, today: NaiveDate) -> Result<DateSpan, RangeProblem> {
    let span = match *range {
        Range::Named(name) => named(name, today),
        Range::Year(year) => year_span(year),
        Range::Month(year, month) => month_span(year, month),
        Range::Day(day) => Some(DateSpan::new(day, day)),
        Range::Between(from, to) => {
            if to < from {
                return Err(RangeProblem::Backwards);
            }
            Some(DateSpan::new(from, to))
        }
        Range::Past(n, unit) => past(n, unit, today),
    };
    span.ok_or(RangeProblem::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    fn span(range: Range, today: &str) -> String {
        resolve(&range, d(today)).expect("resolves").to_string()
    }

    fn named_span(name: &str, today: &str) -> String {
        span(
            Range::Named(NamedRange::from_keyword(name).expect("named")),
            today,
        )
    }

    #[test]
    fn last_summer_and_winter_across_year_ends_and_leap_days() {
        // The example: asked on 2024-03-01.
        assert_eq!(
            named_span("last_summer", "2024-03-01"),
            "2023-06-01 to 2023-08-31"
        );
        // The winter just past ends on the leap day.
        assert_eq!(
            named_span("last_winter", "2024-03-01"),
            "2023-12-01 to 2024-02-29"
        );
        // On the leap day itself that winter is still under way.
        assert_eq!(
            named_span("this_winter", "2024-02-29"),
            "2023-12-01 to 2024-02-29"
        );
        assert_eq!(
            named_span("last_winter", "2024-02-29"),
            "2022-12-01 to 2023-02-28"
        );
        // In December the winter under way crosses into next year.
        assert_eq!(
            named_span("this_winter", "2024-12-31"),
            "2024-12-01 to 2025-02-28"
        );
        assert_eq!(
            named_span("last_winter", "2025-01-01"),
            "2023-12-01 to 2024-02-29"
        );
        // During summer, last summer is a year back; just after, it is the one that ended.
        assert_eq!(
            named_span("last_summer", "2024-07-15"),
            "2023-06-01 to 2023-08-31"
        );
        assert_eq!(
            named_span("last_summer", "2024-09-01"),
            "2024-06-01 to 2024-08-31"
        );
        assert_eq!(
            named_span("this_summer", "2024-03-01"),
            "2024-06-01 to 2024-08-31"
        );
        assert_eq!(
            named_span("this_autumn", "2024-11-30"),
            "2024-09-01 to 2024-11-30"
        );
        assert_eq!(
            named_span("last_spring", "2024-05-31"),
            "2023-03-01 to 2023-05-31"
        );
    }

    #[test]
    fn months_weeks_and_years() {
        assert_eq!(
            named_span("last_month", "2024-01-15"),
            "2023-12-01 to 2023-12-31"
        );
        assert_eq!(
            named_span("last_month", "2024-03-31"),
            "2024-02-01 to 2024-02-29"
        );
        assert_eq!(
            named_span("this_month", "2023-02-10"),
            "2023-02-01 to 2023-02-28"
        );
        assert_eq!(
            named_span("last_year", "2024-01-01"),
            "2023-01-01 to 2023-12-31"
        );
        assert_eq!(
            named_span("this_year", "2024-06-01"),
            "2024-01-01 to 2024-12-31"
        );
        // 2024-01-03 is a Wednesday; its week began in 2024, the one before in 2023.
        assert_eq!(
            named_span("this_week", "2024-01-03"),
            "2024-01-01 to 2024-01-07"
        );
        assert_eq!(
            named_span("last_week", "2024-01-03"),
            "2023-12-25 to 2023-12-31"
        );
        assert_eq!(
            named_span("yesterday", "2024-03-01"),
            "2024-02-29 to 2024-02-29"
        );
        assert_eq!(
            span(Range::Month(2024, 2), "2030-01-01"),
            "2024-02-01 to 2024-02-29"
        );
        assert_eq!(
            span(Range::Year(2023), "2030-01-01"),
            "2023-01-01 to 2023-12-31"
        );
    }

    #[test]
    fn the_last_n_days_weeks_and_months_end_today() {
        assert_eq!(
            span(Range::Past(1, Unit::Days), "2024-03-01"),
            "2024-03-01 to 2024-03-01"
        );
        assert_eq!(
            span(Range::Past(2, Unit::Days), "2024-03-01"),
            "2024-02-29 to 2024-03-01"
        );
        assert_eq!(
            span(Range::Past(1, Unit::Weeks), "2024-01-03"),
            "2023-12-28 to 2024-01-03"
        );
        assert_eq!(
            span(Range::Past(1, Unit::Months), "2024-03-31"),
            "2024-03-01 to 2024-03-31"
        );
        assert_eq!(
            span(Range::Past(12, Unit::Months), "2024-02-29"),
            "2023-03-01 to 2024-02-29"
        );
        assert_eq!(
            resolve(&Range::Past(0, Unit::Days), d("2024-03-01")),
            Err(RangeProblem::Overflow)
        );
    }

    #[test]
    fn between_must_not_run_backwards() {
        let range = Range::Between(d("2024-03-01"), d("2024-02-29"));
        assert_eq!(
            resolve(&range, d("2024-03-01")),
            Err(RangeProblem::Backwards)
        );
        let range = Range::Between(d("2023-12-31"), d("2024-01-01"));
        assert_eq!(span(range, "2000-01-01"), "2023-12-31 to 2024-01-01");
    }
}
