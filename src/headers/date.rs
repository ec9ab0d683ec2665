//! HTTP dates (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850 and
//! asctime formats that recipients must still accept.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::ParseError;

/// Seconds from the epoch to 9999-12-31T23:59:59Z, the last instant an
/// HTTP date can write.
const MAX_SECS: u64 = 253_402_300_799;

/// A point in time with one-second resolution, as HTTP dates carry it.
///
/// Parsing accepts the three formats of RFC 9110 §5.6.7. For RFC 850's
/// two-digit years it applies the RFC's rule: a year that would lie more
/// than 50 years in the future is the most recent past year with those
/// digits. Writing always produces IMF-fixdate. Times before 1970 or after
/// 9999 are clamped, never a panic.
///
/// # Example
///
/// ```
/// use tower_perf::headers::HttpDate;
///
/// let a = HttpDate::parse(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
/// let b = HttpDate::parse(b"Sunday, 06-Nov-94 08:49:37 GMT").unwrap();
/// let c = HttpDate::parse(b"Sun Nov  6 08:49:37 1994").unwrap();
/// assert!(a == b && b == c);
/// assert_eq!(c.to_string(), "Sun, 06 Nov 1994 08:49:37 GMT");
/// assert!(HttpDate::parse(b"yesterday").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpDate {
    secs: u64,
}

impl HttpDate {
    /// The current time, truncated to the second.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Seconds since the Unix epoch.
    pub const fn as_unix_secs(self) -> u64 {
        self.secs
    }

    /// From seconds since the Unix epoch (clamped to year 9999).
    pub const fn from_unix_secs(secs: u64) -> Self {
        Self {
            secs: if secs > MAX_SECS { MAX_SECS } else { secs },
        }
    }

    /// This date as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.secs)
    }

    /// Parses a date in any of the three formats.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        // The clock is read only for an RFC 850 date's two-digit year.
        Self::parse_with(value, || Self::now().year())
    }

    /// Like [`parse`](Self::parse), resolving RFC 850 two-digit years
    /// relative to `now` instead of the clock.
    pub fn parse_at(value: &[u8], now: Self) -> Result<Self, ParseError> {
        Self::parse_with(value, || now.year())
    }

    fn parse_with(value: &[u8], now_year: impl FnOnce() -> u16) -> Result<Self, ParseError> {
        let err = || ParseError::new("http-date", "not an IMF-fixdate, RFC 850 or asctime date");
        let s = std::str::from_utf8(value).map_err(|_| err())?.trim();
        let parsed = match rfc850_to_imf(s, now_year) {
            Some(imf) => httpdate::parse_http_date(&imf),
            None => httpdate::parse_http_date(s),
        };
        parsed.map(Self::from).map_err(|_| err())
    }

    /// The first line of date field `name` (`Date`, `Expires`,
    /// `Last-Modified`, `If-Modified-Since`…): `None` when absent, an error
    /// when invalid. RFC 9110 defines a single value for each; later lines
    /// are ignored.
    pub fn from_headers(
        headers: &HeaderMap,
        name: &HeaderName,
    ) -> Option<Result<Self, ParseError>> {
        headers.get(name).map(|v| Self::parse(v.as_bytes()))
    }

    /// The field value, in IMF-fixdate. Each thread keeps the last value
    /// it wrote: a cache adding `Date` to every response it stores writes
    /// the same one many times a second.
    pub fn to_header_value(self) -> HeaderValue {
        thread_local! {
            static LAST: super::memo::Slot<u64> = const { std::cell::RefCell::new(None) };
        }
        super::memo::memoized(
            &LAST,
            |secs| *secs == self.secs,
            || self.secs,
            || HeaderValue::try_from(self.to_string()).ok(),
        )
        .unwrap_or_else(|| HeaderValue::from_static(""))
    }

    /// The Gregorian year of this date, worked out from the day count
    /// (the civil-from-days algorithm; no formatting).
    fn year(self) -> u16 {
        let days = self.secs / 86_400;
        // Days since 0000-03-01, in 400-year eras of 146,097 days.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        // March-based year: January and February belong to the next one.
        let year = yoe + era * 400 + u64::from(mp >= 10);
        u16::try_from(year).unwrap_or(u16::MAX)
    }
}

impl From<SystemTime> for HttpDate {
    fn from(t: SystemTime) -> Self {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self::from_unix_secs(secs)
    }
}

impl From<HttpDate> for SystemTime {
    fn from(d: HttpDate) -> Self {
        d.to_system_time()
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In range by construction, so httpdate cannot panic here.
        f.write_str(&httpdate::fmt_http_date(self.to_system_time()))
    }
}

impl std::str::FromStr for HttpDate {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s.as_bytes())
    }
}

/// Rewrites an RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`) as an
/// IMF-fixdate with the year RFC 9110 §5.6.7 prescribes. `None` when `s` is
/// not in RFC 850 form.
fn rfc850_to_imf(s: &str, now_year: impl FnOnce() -> u16) -> Option<String> {
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let (day, rest) = s.split_once(", ")?;
    if !DAYS.contains(&day) {
        return None;
    }
    // "DD-Mon-YY HH:MM:SS GMT"
    let b = rest.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || !rest.is_char_boundary(9) {
        return None;
    }
    let yy: u16 = rest.get(7..9)?.parse().ok()?;
    let now_year = now_year();
    let mut year = now_year / 100 * 100 + yy;
    if year > now_year + 50 {
        year -= 100;
    }
    Some(format!(
        "{}, {} {} {}{}",
        day.get(..3)?,
        rest.get(..2)?,
        rest.get(3..6)?,
        year,
        rest.get(9..)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUNDAY_1994: u64 = 784_111_777;

    #[test]
    fn rfc_9110_examples() {
        // RFC 9110 §5.6.7: the same instant in all three formats.
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                HttpDate::parse(s.as_bytes()).unwrap().as_unix_secs(),
                SUNDAY_1994,
                "{s}"
            );
        }
        assert_eq!(
            HttpDate::from_unix_secs(SUNDAY_1994).to_string(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }

    #[test]
    fn rfc_850_fifty_year_rule() {
        let at_2026 = HttpDate::parse(b"Sat, 21 Nov 2026 00:00:00 GMT").unwrap();
        assert_eq!(at_2026.year(), 2026);
        // 2075 is 49 years ahead: kept in this century.
        let d = HttpDate::parse_at(b"Friday, 01-Mar-75 00:00:00 GMT", at_2026).unwrap();
        assert_eq!(d.year(), 2075);
        // 2077 would be 51 years ahead: read as 1977.
        let d = HttpDate::parse_at(b"Tuesday, 01-Mar-77 00:00:00 GMT", at_2026).unwrap();
        assert_eq!(d.year(), 1977);
        // Wrong weekday for the resolved year is rejected.
        assert!(HttpDate::parse_at(b"Saturday, 01-Mar-75 00:00:00 GMT", at_2026).is_err());
    }

    #[test]
    fn malformed_dates() {
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"Sun, 06 Nov 1994 08:49:37",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 31 Feb 1994 08:49:37 GMT",
            b"Mon, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"\xff\xfe",
            b"Sunday, 06-Nov-9\xc3\xa9 08:49:37 GMT",
            "Sunday, 06-Nov-é 08:49:37 GMT".as_bytes(),
            b"Sunday, 06-Nov-94 08:49:37 GMT trailing",
        ] {
            assert!(
                HttpDate::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn clamps_instead_of_panicking() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(HttpDate::from(before).as_unix_secs(), 0);
        let far = HttpDate::from_unix_secs(u64::MAX);
        assert_eq!(far.to_string(), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(HttpDate::parse(far.to_string().as_bytes()).unwrap(), far);
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        assert!(HttpDate::from_headers(&h, &http::header::EXPIRES).is_none());
        h.insert(http::header::EXPIRES, HeaderValue::from_static("0"));
        assert!(
            HttpDate::from_headers(&h, &http::header::EXPIRES)
                .unwrap()
                .is_err()
        );
        let now = HttpDate::now();
        h.insert(http::header::DATE, now.to_header_value());
        assert_eq!(
            HttpDate::from_headers(&h, &http::header::DATE)
                .unwrap()
                .unwrap(),
            now
        );
    }

    #[test]
    fn header_values_follow_the_date() {
        // The per-thread memo answers by the second, not by the last call.
        let a = HttpDate::from_unix_secs(784_111_777);
        let b = HttpDate::from_unix_secs(784_111_778);
        assert_eq!(a.to_header_value(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(a.to_header_value(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(b.to_header_value(), "Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(a.to_header_value(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn years_from_day_counts() {
        // Against the formatted date, around leap days and century turns.
        let mut secs = 0u64;
        while secs < MAX_SECS {
            let d = HttpDate::from_unix_secs(secs);
            let text = d.to_string();
            let year: u16 = text[12..16].parse().unwrap();
            assert_eq!(d.year(), year, "{text}");
            secs += 86_400 * 7 + 3_601;
        }
        for (s, y) in [
            (951_782_400u64, 2000),
            (951_868_799, 2000),
            (4_107_542_399, 2100),
            (0, 1970),
        ] {
            assert_eq!(HttpDate::from_unix_secs(s).year(), y, "{s}");
        }
    }
}
