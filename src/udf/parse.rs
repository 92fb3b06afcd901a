//! Reading dates written as text: `parse_day(text, timezone, format, ...)`,
//! the calendar day in `timezone` of a value written in one of several
//! chrono strftime formats, NULL when no format reads it (so a bad value
//! becomes a rejected row, not a failed query as with `to_timestamp`).
//! Then its tests.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, Date32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{signature, Function, Udf};

const NAME: &str = "parse_day";

/// The functions of this file.
pub fn functions() -> Vec<Function> {
    vec![Function {
        name: NAME,
        signature: signature(
            NAME,
            &["text", "timezone", "format", "..."],
            Some(&DataType::Date32),
        ),
        description: "day in an IANA timezone of a text timestamp read with the first chrono format that fits (offsets honoured, naive = UTC, date-only formats give the date); NULL when none fits",
        udf: Udf::Scalar(Arc::new(ScalarUDF::new_from_impl(ParseDay::new()))),
    }]
}

/// The day `text` falls on in `tz`, trying `formats` in order: a value with
/// an offset (`%z`, `%:z`) is that instant; one without is a UTC instant; a
/// format without a time gives the date as written. `None` when no format
/// reads the whole value or the date is outside Date32.
pub fn parse_day(text: &str, tz: &Tz, formats: &[String]) -> Option<NaiveDate> {
    for f in formats {
        if let Ok(dt) = DateTime::parse_from_str(text, f) {
            return Some(dt.with_timezone(tz).date_naive());
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, f) {
            return Some(tz.from_utc_datetime(&naive).date_naive());
        }
        if let Ok(d) = NaiveDate::parse_from_str(text, f) {
            return Some(d);
        }
    }
    None
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseDay {
    signature: Signature,
}

impl ParseDay {
    fn new() -> Self {
        ParseDay {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// A constant text argument (the timezone, a format).
fn constant(arg: &ColumnarValue, what: &str) -> Result<String> {
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => Ok(s.clone()),
        other => exec_err!(
            "{NAME}: the {what} must be a text constant, got {:?}",
            other.data_type()
        ),
    }
}

impl ScalarUDFImpl for ParseDay {
    fn name(&self) -> &str {
        NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() < 3 {
            return plan_err!(
                "{NAME}(text, timezone, format, ...) takes at least 3 arguments, got {}",
                arg_types.len()
            );
        }
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = constant(&args.args[1], "timezone")?;
        let Ok(tz) = Tz::from_str(&zone) else {
            return exec_err!("{NAME}: unknown timezone {zone:?}");
        };
        let formats = args.args[2..]
            .iter()
            .map(|a| constant(a, "format"))
            .collect::<Result<Vec<_>>>()?;
        let text: ArrayRef = args.args[0].to_array(args.number_rows)?;
        let text = cast(&text, &DataType::Utf8)?;
        let Some(text) = text.as_any().downcast_ref::<StringArray>() else {
            return exec_err!("{NAME}: the text argument is not text");
        };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let days: Date32Array = text
            .iter()
            .map(|v| {
                let d = parse_day(v?.trim(), &tz, &formats)?;
                i32::try_from((d - epoch).num_days()).ok()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(days)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str, tz: &str, formats: &[&str]) -> Option<String> {
        let tz = Tz::from_str(tz).unwrap();
        let f: Vec<String> = formats.iter().map(|s| s.to_string()).collect();
        parse_day(s, &tz, &f).map(|d| d.to_string())
    }

    #[test]
    fn us_dates_without_padding_read_with_the_first_format_that_fits() {
        let f = ["%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M:%S"];
        assert_eq!(
            day("12/1/2010 8:26", "UTC", &f).as_deref(),
            Some("2010-12-01")
        );
        assert_eq!(
            day("2011-01-05 23:59:00", "UTC", &f).as_deref(),
            Some("2011-01-05")
        );
        assert_eq!(
            day("1/13/2011 8:26", "UTC", &f[..1]).as_deref(),
            Some("2011-01-13")
        );
        // Day 13 cannot be a month: no format fits, NULL (a rejected row).
        assert_eq!(day("13/1/2011 8:26", "UTC", &f), None);
        assert_eq!(day("not a date", "UTC", &f), None);
    }

    #[test]
    fn the_day_is_taken_in_the_timezone_naive_values_being_utc() {
        let f = ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"];
        // 23:30 at -05:00 is 04:30 UTC the next day.
        assert_eq!(
            day("2024-03-01 23:30:00-05:00", "UTC", &f).as_deref(),
            Some("2024-03-02")
        );
        assert_eq!(
            day("2024-03-01 23:30:00-05:00", "America/New_York", &f).as_deref(),
            Some("2024-03-01")
        );
        // Naive 02:00 UTC is still the previous evening in New York (EST, -5).
        assert_eq!(
            day("2024-03-02 02:00:00", "America/New_York", &f).as_deref(),
            Some("2024-03-01")
        );
        assert_eq!(
            day("2024-03-02 02:00:00", "Asia/Tokyo", &f).as_deref(),
            Some("2024-03-02")
        );
        // A date alone is that date in any zone.
        assert_eq!(
            day("2024-03-02", "America/New_York", &f).as_deref(),
            Some("2024-03-02")
        );
    }

    #[test]
    fn dates_far_outside_the_nanosecond_range_are_read() {
        let f = ["%Y-%m-%d %H:%M:%S"];
        assert_eq!(
            day("1500-06-01 10:00:00", "UTC", &f).as_deref(),
            Some("1500-06-01")
        );
        assert_eq!(
            day("2500-06-01 10:00:00", "UTC", &f).as_deref(),
            Some("2500-06-01")
        );
    }
}
