//! Digest authentication answers (RFC 2617, RFC 8760): MD5 and SHA-256, with and without
//! `qop=auth`.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Whether the server offered `qop=auth` (the only qop we answer).
    pub qop_auth: bool,
    pub stale: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("not a Digest challenge")]
    NotDigest,
    #[error("challenge lacks {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0}")]
    Unsupported(String),
}

impl Challenge {
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let rest = raw.trim();
        let (scheme, params) = rest.split_once(char::is_whitespace).ok_or(AuthError::NotDigest)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(AuthError::NotDigest);
        }
        let params = parse_params(params);
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm").as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("MD5") => Algorithm::Md5,
            Some("SHA-256") => Algorithm::Sha256,
            Some(other) => return Err(AuthError::Unsupported(other.to_owned())),
        };
        let qop_auth = get("qop").is_some_and(|qop| qop.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")));
        Ok(Self {
            realm: get("realm").ok_or(AuthError::Missing("realm"))?,
            nonce: get("nonce").ok_or(AuthError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The `Authorization` / `Proxy-Authorization` value for a request. `cnonce` and
    /// `nonce_count` are inputs so that the answer is testable.
    pub fn answer(&self, method: &str, uri: &str, username: &str, password: &str, cnonce: &str, nonce_count: u32) -> String {
        let hash = |data: String| match self.algorithm {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        };
        let ha1 = hash(format!("{username}:{}:{password}", self.realm));
        let ha2 = hash(format!("{method}:{uri}"));
        let nc = format!("{nonce_count:08x}");
        let response = if self.qop_auth {
            hash(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            hash(format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let algorithm = match self.algorithm {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        };
        let mut value = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={algorithm}",
            self.realm, self.nonce
        );
        if self.qop_auth {
            value.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(opaque) = &self.opaque {
            value.push_str(&format!(", opaque=\"{opaque}\""));
        }
        value
    }
}

/// `k=v, k="v, with comma"` → pairs, quotes removed.
fn parse_params(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = raw.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key.trim().to_owned(), value.trim().to_owned()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_with_qop_auth() {
        // The worked example of RFC 2617 §3.5 (HTTP, but the digest is the same).
        let challenge = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let answer = challenge.answer("GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b", 1);
        assert!(answer.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{answer}");
        assert!(answer.contains("nc=00000001") && answer.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn rfc_7616_sha256_example() {
        // RFC 7616 §3.9.1, the SHA-256 variant.
        let challenge = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        let answer =
            challenge.answer("GET", "/dir/index.html", "Mufasa", "Circle of Life", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", 1);
        assert!(answer.contains("response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""), "{answer}");
    }

    #[test]
    fn challenges_without_qop_use_the_rfc_2069_form() {
        let challenge = Challenge::parse("Digest realm=\"sipp\", nonce=\"abc\"").unwrap();
        assert!(!challenge.qop_auth);
        let answer = challenge.answer("INVITE", "sip:1@h", "u", "p", "c", 1);
        assert!(!answer.contains("qop"));
        assert!(Challenge::parse("Basic realm=\"x\"").is_err());
        assert!(Challenge::parse("Digest nonce=\"x\"").is_err());
    }
}
