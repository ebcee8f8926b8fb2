//! Kernel byte strings (comm, cgroup paths) as text.

/// A kernel byte string as text, losslessly: invalid UTF-8 bytes become
/// `\xNN` and a backslash becomes `\\`, so odd names never break a line and
/// two different names never print the same.
pub(crate) fn lossless_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_names_stay_valid_json() {
        let s = lossless_text(b"a \"q\"\xff\xfe\n");
        assert_eq!(s, "a \"q\"\\xff\\xfe\n");
        // A real backslash followed by "xff" differs from the byte 0xff.
        assert_eq!(lossless_text(b"\\xff"), "\\\\xff");
        assert_ne!(lossless_text(b"\\xff"), lossless_text(b"\xff"));
        let line = serde_json::to_string(&s).unwrap();
        assert!(!line.contains('\n'));
        let back: String = serde_json::from_str(&line).unwrap();
        assert_eq!(back, s);
    }
}
