//! Checks on tenant text that ends up in a SIP message: custom header names and values,
//! trunk credentials. A value that passes cannot end a header line or start another.

/// Longest custom header value we send.
pub const MAX_HEADER_VALUE: usize = 1024;
/// Longest custom header name.
pub const MAX_HEADER_NAME: usize = 128;
/// Longest trunk username (it is quoted in `Authorization` and sent as `X-Telnyx-Username`).
pub const MAX_USERNAME: usize = 128;
/// Longest trunk password (only ever hashed, but kept bounded and printable).
pub const MAX_PASSWORD: usize = 256;

/// A custom header name: `X-` then RFC 3261 token characters (Retell documents the `X-`).
pub fn check_header_name(name: &str) -> Result<(), &'static str> {
    let is_token = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
    if name.len() < 3 || name.len() > MAX_HEADER_NAME || !name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-")) || !is_token {
        return Err("header names must start with X- and be a SIP token (letters, digits and -.!%*_+`'~), at most 128 characters");
    }
    Ok(())
}

/// A header value: no CR, LF, NUL or other control character (a tab is allowed), bounded.
pub fn check_header_value(value: &str) -> Result<(), &'static str> {
    if has_control(value, true) {
        return Err("must not contain CR, LF, NUL or other control characters");
    }
    if value.len() > MAX_HEADER_VALUE {
        return Err("must be at most 1024 bytes");
    }
    Ok(())
}

/// A trunk username: printable, no `"` or `\` (it sits in a quoted string), bounded.
pub fn check_username(raw: &str) -> Result<(), &'static str> {
    if raw.is_empty() || raw.len() > MAX_USERNAME {
        return Err("must be 1 to 128 bytes");
    }
    if has_control(raw, false) || raw.contains(['"', '\\']) || raw.contains(char::is_whitespace) {
        return Err("must not contain whitespace, quotes, backslashes or control characters");
    }
    Ok(())
}

/// A trunk password: no control characters, bounded.
pub fn check_password(raw: &str) -> Result<(), &'static str> {
    if raw.len() > MAX_PASSWORD {
        return Err("must be at most 256 bytes");
    }
    if has_control(raw, false) {
        return Err("must not contain CR, LF, NUL or other control characters");
    }
    Ok(())
}

fn has_control(text: &str, tab_allowed: bool) -> bool {
    text.chars().any(|c| c.is_control() && !(tab_allowed && c == '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_x_tokens() {
        for ok in ["X-Customer", "x-a", "X-Call.Id_2", "X-~'`"] {
            assert!(check_header_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "X-", "Via", "Contact", "X-Foo:", "X-Foo Bar", "X-Foo\r\nVia", "X-é", &format!("X-{}", "a".repeat(127))] {
            assert!(check_header_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_values_cannot_break_the_line() {
        assert!(check_header_value("plain value; with=params, \"quotes\"\tand tab").is_ok());
        for bad in ["a\r\nVia: x", "a\nb", "a\rb", "a\0b", "a\u{7f}b", "a\u{85}b", "\u{1b}[31m"] {
            assert_eq!(check_header_value(bad), Err("must not contain CR, LF, NUL or other control characters"), "{bad:?}");
        }
        assert!(check_header_value(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn credentials_are_printable_and_bounded() {
        assert!(check_username("alice_01@example").is_ok());
        for bad in ["", "al\"ice", "al\\ice", "a b", "a\r\nb", &"u".repeat(129)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("p@ss w\"ord\\").is_ok());
        assert!(check_password("a\nb").is_err());
        assert!(check_password(&"p".repeat(257)).is_err());
    }
}
