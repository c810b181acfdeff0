//! Durations (`500ms`, `5s`, `72h`) and sizes (`256KiB`, `1MiB`) as written in `gateway.yaml`.

use std::time::Duration;

/// Parses `500ms`, `5s`, `2m`, `1h`, `3d` (a whole number and one unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number followed by a unit"))?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ));
        }
    }
    .ok_or_else(|| format!("`{text}` is too large"))?;
    Ok(Duration::from_millis(millis))
}

/// Parses `512`, `512B`, `64KiB`, `1MiB`, `2GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 256KiB or 1MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown size unit `{other}` (use B, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a transfer rate per second: `1KiB/s`, `512B/s`; `0` turns the floor off.
pub fn parse_byte_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let size = text
        .strip_suffix("/s")
        .ok_or_else(|| format!("`{text}` is not a rate such as 1KiB/s (or 0 for none)"))?;
    parse_size(size).map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates() {
        assert_eq!(parse_byte_rate("1KiB/s"), Ok(1024));
        assert_eq!(parse_byte_rate(" 512B/s "), Ok(512));
        assert_eq!(parse_byte_rate("0"), Ok(0));
        assert!(
            parse_byte_rate("1KiB").is_err(),
            "the unit of time is required"
        );
        assert!(parse_byte_rate("fast/s").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1 TiB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
