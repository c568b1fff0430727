//! The Kubernetes CRI log format, one record per line:
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n`.
//!
//! `F` ends a line; `P` is a piece of a line whose end comes in a later
//! record of the same stream (a long line, or output read before its
//! newline arrived). The content is the raw bytes of the output, so binary
//! output is kept exactly; only readers that need text convert it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    pub(crate) fn slot<T>(self, pair: &mut [T; 2]) -> &mut T {
        &mut pair[self.index()]
    }
}

/// One parsed record; `content` borrows the line it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unix time in nanoseconds.
    pub timestamp: i64,
    pub stream: Stream,
    /// A `P` record: the line goes on in the next record of this stream.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Unix time now, in nanoseconds.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Appends `nanos` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (fixed width, UTC).
pub fn format_timestamp(nanos: i64, out: &mut Vec<u8>) {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    );
    out.extend_from_slice(s.as_bytes());
}

/// Parses an RFC 3339 UTC timestamp with up to nine fraction digits, as
/// written by `format_timestamp` or by other CRI runtimes (`Z` only).
pub fn parse_timestamp(s: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' {
        return None;
    }
    if s[16] != b':' || s.last() != Some(&b'Z') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut nanos = 0i64;
    if s.len() > 20 {
        if s[19] != b'.' {
            return None;
        }
        let digits = &s[20..s.len() - 1];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = num(20..s.len() - 1)? * 10i64.pow(9 - digits.len() as u32);
    } else if s.len() != 20 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000_000 + nanos)
}

/// Appends one record (and its newline) to `out`; `ts` is a formatted timestamp.
pub fn append_record(out: &mut Vec<u8>, ts: &[u8], stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Parses one record (without its newline); `None` for a malformed line.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = parse_timestamp(parts.next()?)?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        timestamp,
        stream,
        partial,
        content: parts.next().unwrap_or(b""),
    })
}

// Howard Hinnant's civil calendar algorithms (public domain), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(nanos: i64) -> String {
        let mut v = Vec::new();
        format_timestamp(nanos, &mut v);
        String::from_utf8(v).expect("ascii")
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-12-01T15:55:58.123456789Z
        let t = 1_796_140_558_123_456_789;
        assert_eq!(ts(t), "2026-12-01T15:55:58.123456789Z");
        assert_eq!(parse_timestamp(ts(t).as_bytes()), Some(t));
        assert_eq!(
            parse_timestamp(b"2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500_000_000)
        );
        assert_eq!(
            parse_timestamp(b"2024-02-29T23:59:59Z"),
            Some(1_709_251_199_000_000_000)
        );
        for bad in [
            &b"2024-02-29 23:59:59Z"[..],
            b"2024-13-01T00:00:00Z",
            b"2024-02-29T23:59:59.1234567890Z",
            b"2024-02-29T23:59:59+01:00",
            b"",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn records_round_trip_with_raw_bytes() {
        let mut out = Vec::new();
        append_record(
            &mut out,
            b"2026-12-01T15:55:58.000000001Z",
            Stream::Stderr,
            true,
            b"a \xff b",
        );
        assert_eq!(out, b"2026-12-01T15:55:58.000000001Z stderr P a \xff b\n");
        let r = parse_record(&out[..out.len() - 1]).expect("parses");
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.content, b"a \xff b");
        assert_eq!(r.timestamp % 1_000_000_000, 1);
        let empty = parse_record(b"2026-12-01T15:55:58.000000001Z stdout F ").expect("empty line");
        assert_eq!(empty.content, b"");
        assert!(parse_record(b"2026-12-01T15:55:58.000000001Z stdin F x").is_none());
        assert!(parse_record(b"garbage").is_none());
    }
}
