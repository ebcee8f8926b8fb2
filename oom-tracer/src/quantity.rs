//! Kubernetes resource quantities for memory (`50Mi`, `1.5Gi`, `128974848`,
//! `129e6`, `123M`), converted to bytes as `Quantity::Value()` does: rounded
//! up to a whole byte.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum QuantityError {
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
pub(crate) fn parse_memory(input: &str) -> Result<u64, QuantityError> {
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
    let mult: u128 = match suffix {
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
            match exp {
                0..=18 => 10u128.pow(exp as u32),
                -18..=-1 => {
                    denom = denom
                        .checked_mul(10u128.pow(exp.unsigned_abs()))
                        .ok_or_else(range)?;
                    1
                }
                _ => return Err(range()),
            }
        }
        other => {
            return Err(QuantityError::Suffix {
                input: input.to_owned(),
                suffix: other.to_owned(),
            });
        }
    };
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
pub(crate) fn format_bytes(bytes: u64) -> String {
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

    /// Property tests: a short fuzz run of the parser inside `cargo test`.
    mod props {
        use proptest::{prelude::*, sample::select};

        use super::*;

        /// Bounded so that the whole set runs in well under a second; no
        /// `proptest-regressions` files are written into the tree.
        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 2000,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        const BINARY: [(&str, u32); 6] = [
            ("Ki", 10),
            ("Mi", 20),
            ("Gi", 30),
            ("Ti", 40),
            ("Pi", 50),
            ("Ei", 60),
        ];
        /// Decimal suffixes and their power of ten, the exponent forms included.
        const DECIMAL: [(&str, u32); 10] = [
            ("", 0),
            ("k", 3),
            ("M", 6),
            ("G", 9),
            ("T", 12),
            ("P", 15),
            ("E", 18),
            ("e3", 3),
            ("E9", 9),
            ("e18", 18),
        ];

        /// `Ok(bytes)` if they fit in a u64, else the `Range` error.
        fn expect(input: &str, bytes: u128) -> Result<u64, QuantityError> {
            u64::try_from(bytes).map_err(|_| QuantityError::Range {
                input: input.to_owned(),
            })
        }

        /// Strings shaped like quantities, to get past the first checks.
        fn quantity_like() -> impl Strategy<Value = String> {
            "[ +-]{0,2}[0-9.]{0,25}(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|[eE][+-]?[0-9]{0,4}|[a-zA-Z]{0,3}|.)[ ]?"
        }

        /// Sizes spread evenly over bit lengths 0..=63, not just huge ones.
        fn size() -> impl Strategy<Value = u64> {
            prop_oneof![
                (0u32..64, any::<u64>())
                    .prop_map(|(bits, r)| (1u64 << bits) | (r & ((1u64 << bits) - 1))),
                // Around the unit boundaries and tenths, where truncation bites.
                (select(&[10u32, 20, 30, 40][..]), 1u64..=20, -2i64..=2).prop_map(
                    |(shift, tenths, d)| ((tenths << shift) / 10).saturating_add_signed(d)
                ),
                any::<u64>(),
            ]
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn arbitrary_strings_never_panic(s in any::<String>()) {
                let _ = parse_memory(&s);
            }

            /// Near misses never panic, and a success is a positive size.
            #[test]
            fn quantity_like_strings_never_panic(s in quantity_like()) {
                if let Ok(bytes) = parse_memory(&s) {
                    prop_assert!(bytes > 0);
                }
            }

            #[test]
            fn binary_suffixes(n in 1u64..=1 << 40, (suffix, shift) in select(&BINARY[..])) {
                let input = format!("{n}{suffix}");
                prop_assert_eq!(parse_memory(&input), expect(&input, u128::from(n) << shift));
            }

            #[test]
            fn decimal_suffixes(n in 1u64..=1 << 40, (suffix, pow) in select(&DECIMAL[..])) {
                let input = format!("{n}{suffix}");
                prop_assert_eq!(
                    parse_memory(&input),
                    expect(&input, u128::from(n) * 10u128.pow(pow))
                );
            }

            /// Surrounding blanks and a leading `+` change nothing.
            #[test]
            fn blanks_and_plus(n in 1u64..=1 << 40, (suffix, shift) in select(&BINARY[..3]),
                               pre in " {0,2}", post in " {0,2}") {
                let input = format!("{pre}+{n}{suffix}{post}");
                prop_assert_eq!(parse_memory(&input), expect(&input, u128::from(n) << shift));
            }

            /// A fraction is rounded up to a whole byte, as `Quantity::Value()` does.
            #[test]
            fn fractions_round_up(int in 0u64..100_000, frac in "[0-9]{1,6}",
                                  (suffix, shift) in select(&BINARY[..3])) {
                let input = format!("{int}.{frac}{suffix}");
                let scale = 10u128.pow(frac.len() as u32);
                let num = u128::from(int) * scale + frac.parse::<u128>().unwrap();
                let bytes = (num << shift).div_ceil(scale);
                let want = if bytes == 0 {
                    Err(QuantityError::Zero { input: input.clone() })
                } else {
                    expect(&input, bytes)
                };
                prop_assert_eq!(parse_memory(&input), want);
            }

            /// `format_bytes` truncates to one decimal of the largest unit
            /// (Ki..Ti) not above the value; below 1Ki it prints the exact
            /// integer. So parsing its output gives back `p` with
            /// `p <= b` and `b - p < unit / 10 <= b / 10` (never more, and
            /// never less than 10% off), exactly `b` below 1Ki, and `p`
            /// formats to the same text.
            #[test]
            fn format_then_parse(b in size().prop_filter("positive", |b| *b > 0)) {
                let text = format_bytes(b);
                let p = parse_memory(&text).unwrap();
                if b < 1 << 10 {
                    prop_assert_eq!(&text, &b.to_string());
                    prop_assert_eq!(p, b);
                } else {
                    let unit = [40u32, 30, 20, 10].into_iter().map(|s| 1u64 << s)
                        .find(|u| b >= *u).unwrap();
                    prop_assert!(p <= b, "{b} -> {text} -> {p}");
                    prop_assert!((b - p) * 10 < unit, "{b} -> {text} -> {p}");
                    prop_assert!(u128::from(b - p) * 10 < u128::from(b), "{b} -> {text} -> {p}");
                    prop_assert_eq!(format_bytes(p), text);
                }
            }
        }
    }
}
