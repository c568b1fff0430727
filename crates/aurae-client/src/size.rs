//! Sizes as people write them on a command line, shared by `aer` and
//! `auraed` flags: bytes, or a number with K, M or G (powers of 1024;
//! `Ki`/`Mi`/`Gi` and a trailing `B` are accepted too).

/// The number of bytes `s` stands for.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| {
        format!("{s:?} is not a size: use bytes or a number with K, M or G (e.g. 10M)")
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is out of range: give a size up to 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_like_kubelet_flags() {
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("10Mi"), Ok(10 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
