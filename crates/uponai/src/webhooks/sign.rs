//! The `x-retell-signature` header, exactly as the official SDKs verify it:
//! `v=<unix ms>,d=<hex HMAC-SHA256(key, body + ms)>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-retell-signature";

/// The signature of `body` sent at `timestamp_ms`, keyed by the workspace's webhook key.
pub fn signature(body: &str, key: &str, timestamp_ms: i64) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body.as_bytes());
    mac.update(timestamp_ms.to_string().as_bytes());
    format!("v={timestamp_ms},d={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_python_sdks_sign() {
        // From retell-sdk 6.2.13: retell.lib.webhook_auth.symmetric["sign"](body, key, 1714608475945).
        let body = r#"{"event":"call_ended","call":{"call_id":"call_1"}}"#;
        assert_eq!(
            signature(body, "key_test_0123456789abcdef", 1_714_608_475_945),
            "v=1714608475945,d=5287e6a1d9934ad6ce3d0c00fa0b6c7b271482e2552cdf053dd2d94737074b83"
        );
    }
}
