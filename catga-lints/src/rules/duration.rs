//! `"250ms"`, `"5s"`, `"2m"`, `"1h"` → milliseconds: the `timeout = "…"` of a message attribute.

/// Parses a duration literal into milliseconds, or says what is wrong.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("`{text}` has no unit")),
        other => return Err(format!("unknown unit `{other}`")),
    };
    let millis = value
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    if millis == 0 {
        return Err("a zero duration would fail every dispatch".to_string());
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn parses_units() {
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("5s"), Ok(5_000));
        assert_eq!(parse_millis("2m"), Ok(120_000));
        assert_eq!(parse_millis("1h"), Ok(3_600_000));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_millis("5").is_err());
        assert!(parse_millis("s").is_err());
        assert!(parse_millis("5 days").is_err());
        assert!(parse_millis("0s").is_err());
        assert!(parse_millis("99999999999999999999h").is_err());
    }
}
