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
/// Parsing accepts the three formats of RFC 9110 §5.6.7, as leniently as
/// §5.6.7 asks of recipients: day and month names and `GMT` in any case,
/// runs of spaces, and a day name that is not the date's. For RFC 850's
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

    /// Parses a date in any of the three formats. Each thread remembers
    /// the last IMF-fixdate it parsed.
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
        // The longest date is 33 bytes: refuse a long value unread.
        if value.len() > MAX_DATE_LEN {
            return Err(err());
        }
        let s = std::str::from_utf8(value).map_err(|_| err())?.trim();
        // An IMF-fixdate this thread parsed last (a `Date` is the same for
        // a whole second, and a cache reads back the one it wrote).
        let fixdate: Option<[u8; IMF_FIXDATE_LEN]> = s.as_bytes().try_into().ok();
        if let Some(bytes) = fixdate {
            if let Some(secs) = LAST_PARSED
                .try_with(|last| {
                    last.get()
                        .filter(|(b, _)| *b == bytes)
                        .map(|(_, secs)| secs)
                })
                .ok()
                .flatten()
            {
                return Ok(Self { secs });
            }
        }
        // The forms senders write, canonical: the strict parser alone.
        // (IMF-fixdate has its comma fourth, asctime a space; RFC 850's
        // two-digit year needs the rewrite for RFC 9110's century rule.)
        if matches!(s.as_bytes().get(3), Some(b',' | b' ')) {
            if let Ok(t) = httpdate::parse_http_date(s) {
                let date = Self::from(t);
                if let Some(bytes) = fixdate {
                    // Only what the strict parser read alone: the result
                    // doesn't depend on the clock.
                    let _ = LAST_PARSED.try_with(|last| last.set(Some((bytes, date.secs))));
                }
                return Ok(date);
            }
        }
        let imf = lenient_to_imf(s, now_year).ok_or_else(err)?;
        httpdate::parse_http_date(&imf)
            .map(Self::from)
            .map_err(|_| err())
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

/// The longest field value read as a date: twice the longest date (33
/// bytes, RFC 850 on a Wednesday), for runs of spaces.
const MAX_DATE_LEN: usize = 64;

/// The length of every IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const IMF_FIXDATE_LEN: usize = 29;

thread_local! {
    /// The last IMF-fixdate this thread parsed, and its seconds.
    static LAST_PARSED: std::cell::Cell<Option<([u8; IMF_FIXDATE_LEN], u64)>> =
        const { std::cell::Cell::new(None) };
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Rewrites a date in any of the three formats, read as leniently as RFC
/// 9110 §5.6.7 asks of recipients, as the IMF-fixdate the strict parser
/// then checks (digits, ranges, days of the month): day and month names
/// and `GMT` in any case, runs of spaces, and a day name that need not be
/// the date's (it is checked to be one, then replaced by the right one).
/// An RFC 850 two-digit year becomes the year RFC 9110 prescribes.
/// `None` when `s` is in none of the formats. Linear (the caller reads at
/// most [`MAX_DATE_LEN`] bytes).
fn lenient_to_imf(s: &str, now_year: impl FnOnce() -> u16) -> Option<String> {
    let end = s.find([',', ' '])?;
    let (day, rest) = s.split_at(end);
    if !DAYS
        .iter()
        .any(|d| day.eq_ignore_ascii_case(d) || day.eq_ignore_ascii_case(&d[..3]))
    {
        return None;
    }
    let comma = rest.starts_with(',');
    let mut words = rest[usize::from(comma)..].split_ascii_whitespace();
    let (mday, month, year, time) = if comma {
        let first = words.next()?;
        let date = if let Some((mday, rest)) = first.split_once('-') {
            // RFC 850: `06-Nov-94 08:49:37 GMT`.
            let (month, yy) = rest.split_once('-')?;
            let yy = digits(yy, 2..=2)?;
            let now = now_year();
            let mut year = now / 100 * 100 + yy;
            if year > now.saturating_add(50) {
                year -= 100;
            }
            (
                digits(mday, 2..=2)?,
                month_index(month)?,
                year,
                words.next()?,
            )
        } else {
            // IMF-fixdate: `06 Nov 1994 08:49:37 GMT`.
            let month = month_index(words.next()?)?;
            let year = digits(words.next()?, 4..=4)?;
            (digits(first, 2..=2)?, month, year, words.next()?)
        };
        if !words.next()?.eq_ignore_ascii_case("GMT") {
            return None;
        }
        date
    } else {
        // asctime: `Nov  6 08:49:37 1994`.
        let month = month_index(words.next()?)?;
        let mday = digits(words.next()?, 1..=2)?;
        let time = words.next()?;
        (mday, month, digits(words.next()?, 4..=4)?, time)
    };
    // Years before 1970 are refused here, before any arithmetic on them
    // (httpdate refuses them too).
    if words.next().is_some() || !(1..=31).contains(&mday) || !(1970..=9999).contains(&year) {
        return None;
    }
    let weekday = (days_from_civil(year, month + 1, mday) + 3) % 7;
    Some(format!(
        "{}, {mday:02} {} {year:04} {time} GMT",
        &DAYS[weekday as usize][..3],
        MONTHS[month]
    ))
}

/// `s` as a number, when it is `len` ASCII digits.
fn digits(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<u16> {
    if !len.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The month (0 for January) of a three-letter name in any case.
fn month_index(name: &str) -> Option<usize> {
    MONTHS.iter().position(|m| name.eq_ignore_ascii_case(m))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (`month` 1–12), for years from 1970 (the days-from-civil algorithm).
fn days_from_civil(year: u16, month: usize, mday: u16) -> u64 {
    let (year, month, mday) = (u64::from(year), month as u64, u64::from(mday));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + mday - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
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
    fn the_remembered_date_answers_only_its_own_bytes() {
        let a = b"Sun, 06 Nov 1994 08:49:37 GMT";
        let b = b"Sun, 06 Nov 1994 08:49:38 GMT";
        for _ in 0..2 {
            assert_eq!(HttpDate::parse(a).unwrap().as_unix_secs(), SUNDAY_1994);
            assert_eq!(HttpDate::parse(b).unwrap().as_unix_secs(), SUNDAY_1994 + 1);
        }
        // Surrounding whitespace is trimmed before the memo is consulted.
        assert_eq!(
            HttpDate::parse(b" Sun, 06 Nov 1994 08:49:38 GMT ")
                .unwrap()
                .as_unix_secs(),
            SUNDAY_1994 + 1
        );
        // 29 bytes that are not a date are still refused after a date.
        assert!(HttpDate::parse(b"Sun, 06 Nov 1994 08:49:38 GMX").is_err());
        assert!(HttpDate::parse(&[0u8; 29]).is_err());
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
        // A weekday that is not the resolved year's is read and ignored.
        let d = HttpDate::parse_at(b"Saturday, 01-Mar-75 00:00:00 GMT", at_2026).unwrap();
        assert_eq!(d.year(), 2075);
    }

    /// RFC 9110 §5.6.7: recipients read names in any case and a weekday
    /// that does not match the date, in all three formats.
    #[test]
    fn lenient_reading() {
        for s in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994  08:49:37 GMT",
            "SUNDAY, 06-nov-94 08:49:37 Gmt",
            "Friday, 06-Nov-94 08:49:37 GMT",
            "sun nov  6 08:49:37 1994",
            "Tue NOV 6 08:49:37 1994",
            "Sun Nov 06 08:49:37 1994",
        ] {
            assert_eq!(
                HttpDate::parse(s.as_bytes()).map(HttpDate::as_unix_secs),
                Ok(SUNDAY_1994),
                "{s}"
            );
        }
        // Leap days and the turn of a century, against the writer.
        for secs in [951_782_400u64, 4_107_542_399, 1_709_164_800, 0] {
            let text = HttpDate::from_unix_secs(secs).to_string();
            let wrong_day = format!("Wed{}", &text[3..]).to_lowercase();
            assert_eq!(
                HttpDate::parse(wrong_day.as_bytes())
                    .unwrap()
                    .as_unix_secs(),
                secs,
                "{wrong_day}"
            );
        }
        // Linear and bounded: a long value is refused at once.
        let long = format!("Sun, 06 Nov 1994 08:49:37 GMT{}", " ".repeat(100_000) + "x");
        assert!(HttpDate::parse(long.as_bytes()).is_err());
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
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Son, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Novem 1994 08:49:37 GMT",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994 GMT",
            b"Sun Nov 06 08:49 1994",
            b"Sun, 00 Nov 1994 08:49:37 GMT",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 01 Jan 0000 00:00:00 GMT",
            b"Sun Jan  1 00:00:00 0000",
            b"sun, 01 feb 1969 00:00:00 gmt",
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
