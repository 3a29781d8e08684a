//! Phone numbers. `E164` is a number libphonenumber accepts as valid; `DialString` is what a
//! call may be placed to, which for custom trunks with `ignore_e164_validation` may be any
//! dialable string.

use phonenumber::Mode;

/// A valid phone number in canonical E.164 form (`+14155550100`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct E164 {
    canonical: String,
    region: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("must be in E.164 format (a leading + and the country code, digits only), got {0:?}")]
    NotE164(String),
    #[error("{0:?} is not a valid phone number")]
    Invalid(String),
    #[error("{0:?} is not a dialable string (digits, letters, + * # . _ - only, at most 64)")]
    NotDialable(String),
}

impl E164 {
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let digits = raw.strip_prefix('+').ok_or_else(|| PhoneError::NotE164(raw.to_owned()))?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::NotE164(raw.to_owned()));
        }
        let number = phonenumber::parse(None, raw).map_err(|_| PhoneError::Invalid(raw.to_owned()))?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::Invalid(raw.to_owned()));
        }
        let canonical = number.format().mode(Mode::E164).to_string();
        let region = number.country().id().map(|id| id.as_ref().to_owned());
        Ok(Self { canonical, region })
    }

    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// ISO 3166-1 alpha-2 region of the number, when libphonenumber can tell (`US`, `GB`).
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The national format for humans (`(415) 555-0100`).
    pub fn pretty(&self) -> String {
        match phonenumber::parse(None, &self.canonical) {
            Ok(number) => number.format().mode(Mode::International).to_string(),
            Err(_) => self.canonical.clone(),
        }
    }
}

impl std::fmt::Display for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// A destination or caller id as it will be put in a SIP URI user part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialString {
    E164(E164),
    /// Accepted only for custom (imported) trunks with `ignore_e164_validation`.
    Raw(String),
}

impl DialString {
    /// Parses strictly as E.164 unless `allow_raw`, in which case any dialable string passes.
    pub fn parse(raw: &str, allow_raw: bool) -> Result<Self, PhoneError> {
        match E164::parse(raw) {
            Ok(number) => Ok(Self::E164(number)),
            Err(err) if !allow_raw => Err(err),
            Err(_) => {
                let dialable =
                    !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"+*#._-".contains(&b));
                if dialable { Ok(Self::Raw(raw.to_owned())) } else { Err(PhoneError::NotDialable(raw.to_owned())) }
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::E164(number) => number.as_str(),
            Self::Raw(raw) => raw,
        }
    }

    pub fn region(&self) -> Option<&str> {
        match self {
            Self::E164(number) => number.region(),
            Self::Raw(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_parse_with_their_region() {
        let us = E164::parse("+14155552671").unwrap();
        assert_eq!(us.as_str(), "+14155552671");
        assert_eq!(us.region(), Some("US"));
        assert_eq!(E164::parse("+442071838750").unwrap().region(), Some("GB"));
    }

    #[test]
    fn numbers_without_plus_or_with_junk_are_not_e164() {
        assert!(matches!(E164::parse("14155552671"), Err(PhoneError::NotE164(_))));
        assert!(matches!(E164::parse("+1 415 555 2671"), Err(PhoneError::NotE164(_))));
        assert!(matches!(E164::parse("+1415555267100000"), Err(PhoneError::NotE164(_))));
    }

    #[test]
    fn well_formed_but_unassigned_numbers_are_invalid() {
        assert!(matches!(E164::parse("+10000000000"), Err(PhoneError::Invalid(_))));
    }

    #[test]
    fn raw_dial_strings_need_permission_and_stay_dialable() {
        assert!(DialString::parse("1001", false).is_err());
        assert_eq!(DialString::parse("1001", true).unwrap().as_str(), "1001");
        assert!(DialString::parse("10 01", true).is_err());
        assert!(DialString::parse("a\r\nVia: x", true).is_err());
    }
}
