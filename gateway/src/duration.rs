//! Durations as installers write them in the site file: "90s", "10m", "1h", "1h30m".

use scenes::Span;

/// Parses `"90s"`, `"10m"`, `"1h"`, `"1h30m"`, `"500ms"` into a span.
pub fn parse_span(text: &str) -> Result<Span, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. \"90s\", \"10m\" or \"1h\"".into());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "'{text}' is not a duration: write a number and a unit (ms, s, m, h), e.g. \"10m\""
            ));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{text}': number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "'{text}' has a number without a unit (ms, s, m or h)"
                ));
            }
            u => return Err(format!("'{text}': unknown unit '{u}' (use ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("'{text}' is too long"))?;
    }
    Ok(Span::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installer_durations_and_explains_mistakes() {
        assert_eq!(parse_span("90s"), Ok(Span::seconds(90)));
        assert_eq!(parse_span("10m"), Ok(Span::minutes(10)));
        assert_eq!(parse_span("1h30m"), Ok(Span::minutes(90)));
        assert_eq!(parse_span("250ms"), Ok(Span::from_millis(250)));
        assert!(parse_span("10").unwrap_err().contains("without a unit"));
        assert!(
            parse_span("ten minutes")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_span("5d").unwrap_err().contains("unknown unit 'd'"));
        assert!(parse_span("").is_err());
    }
}
