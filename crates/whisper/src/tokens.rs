//! Decode Whisper (GPT-2 byte-level BPE) token strings to text without the tokenizers crate.
//! ct2rs returns each token as its vocabulary string, e.g. "ĠHello"; GPT-2's bytes_to_unicode
//! maps every byte to one printable char, so invert that map and UTF-8-decode the bytes.

use std::collections::HashMap;

fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::new();
    let mut extra = 0u32;
    for b in 0u32..=255 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        // `c` is below 0x200: always a valid char.
        if let Some(c) = char::from_u32(c) {
            map.insert(c, b as u8);
        }
    }
    map
}

#[derive(Debug)]
pub(crate) struct ByteDecoder(HashMap<char, u8>);

impl ByteDecoder {
    pub(crate) fn new() -> Self {
        Self(unicode_to_byte())
    }

    /// Skips special tokens (`<|...|>`: end of text, timestamps, ...).
    pub(crate) fn decode<S: AsRef<str>>(&self, tokens: &[S]) -> String {
        let mut bytes = Vec::new();
        for t in tokens {
            let t = t.as_ref();
            if t.starts_with("<|") && t.ends_with("|>") {
                continue;
            }
            bytes.extend(t.chars().filter_map(|c| self.0.get(&c).copied()));
        }
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}
