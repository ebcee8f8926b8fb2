//! Kubernetes resource quantities for memory (`50Mi`, `1.5Gi`, `128974848`,
//! `129e6`, `123M`), converted to bytes as `Quantity::Value()` does: rounded
//! up to a whole byte.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("{input:?} is not a Kubernetes quantity (e.g. 50Mi, 1Gi, 128974848, 129M)")]
    Syntax { input: String },
    #[error(
        "{input:?} has an unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E)"
    )]
    Suffix { input: String, suffix: String },
    #[error("{input:?} is out of range for a memory size")]
    Range { input: String },
    #[error("{input:?} is zero; a memory limit must be positive")]
    Zero { input: String },
}

/// Parses a memory quantity into bytes.
pub fn parse_memory(input: &str) -> Result<u64, QuantityError> {
    let s = input.trim();
    let syntax = || QuantityError::Syntax {
        input: input.to_owned(),
    };
    let range = || QuantityError::Range {
        input: input.to_owned(),
    };
    let s = s.strip_prefix('+').unwrap_or(s);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // mantissa = digits as an integer, scaled down by 10^frac_len.
    let digits = format!("{int_part}{frac_part}");
    let mantissa: u128 = digits.parse().map_err(|_| range())?;
    let mut denom: u128 = 10u128
        .checked_pow(frac_part.len() as u32)
        .ok_or_else(range)?;
    let mut mult: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "m" => {
            denom = denom.checked_mul(1000).ok_or_else(range)?;
            1
        }
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| syntax())?;
            if !(0..=18).contains(&exp) {
                if exp < 0 && exp >= -18 {
                    denom = denom
                        .checked_mul(10u128.pow(exp.unsigned_abs()))
                        .ok_or_else(range)?;
                    1
                } else {
                    return Err(range());
                }
            } else {
                10u128.pow(exp as u32)
            }
        }
        other => {
            return Err(QuantityError::Suffix {
                input: input.to_owned(),
                suffix: other.to_owned(),
            });
        }
    };
    if mult == 0 {
        mult = 1;
    }
    let scaled = mantissa.checked_mul(mult).ok_or_else(range)?;
    let bytes = scaled.div_ceil(denom);
    if bytes == 0 {
        return Err(QuantityError::Zero {
            input: input.to_owned(),
        });
    }
    u64::try_from(bytes).map_err(|_| range())
}

/// Formats bytes the way a person reads a limit: `50Mi`, `1.5Gi`, `4096`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, unit) in UNITS {
        if bytes >= unit {
            let whole = bytes / unit;
            let tenth = (bytes % unit) * 10 / unit;
            return if tenth == 0 {
                format!("{whole}{suffix}")
            } else {
                format!("{whole}.{tenth}{suffix}")
            };
        }
    }
    format!("{bytes}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(parse_memory("50Mi"), Ok(52_428_800));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("512Ki"), Ok(524_288));
        assert_eq!(parse_memory("129M"), Ok(129_000_000));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("128974848"), Ok(128_974_848));
        assert_eq!(parse_memory(" 64Mi "), Ok(64 << 20));
        assert_eq!(parse_memory("+1Ki"), Ok(1024));
    }

    #[test]
    fn fractions_exponents_and_rounding() {
        assert_eq!(parse_memory("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(parse_memory("0.5Ki"), Ok(512));
        assert_eq!(parse_memory("129e6"), Ok(129_000_000));
        assert_eq!(parse_memory("1E3"), Ok(1000));
        // Kubernetes rounds fractional bytes up.
        assert_eq!(parse_memory("1500m"), Ok(2));
        assert_eq!(parse_memory("0.1"), Ok(1));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            parse_memory("banana"),
            Err(QuantityError::Syntax { .. })
        ));
        assert!(matches!(
            parse_memory(""),
            Err(QuantityError::Syntax { .. })
        ));
        assert!(matches!(
            parse_memory("-5Mi"),
            Err(QuantityError::Syntax { .. })
        ));
        assert!(matches!(
            parse_memory("1.2.3Mi"),
            Err(QuantityError::Syntax { .. })
        ));
        assert!(matches!(
            parse_memory("5MB"),
            Err(QuantityError::Suffix { .. })
        ));
        assert!(matches!(parse_memory("0"), Err(QuantityError::Zero { .. })));
        assert!(matches!(
            parse_memory("99999Ei"),
            Err(QuantityError::Range { .. })
        ));
        assert!(matches!(
            parse_memory("1e99"),
            Err(QuantityError::Range { .. })
        ));
        let msg = parse_memory("banana").unwrap_err().to_string();
        assert!(msg.contains("banana") && msg.contains("50Mi"), "{msg}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(52_428_800), "50Mi");
        assert_eq!(format_bytes(1_610_612_736), "1.5Gi");
        assert_eq!(format_bytes(100), "100");
    }
}
