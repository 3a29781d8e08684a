//! RFC 4733 telephone-events: DTMF digits in and out of RTP.

/// `0`–`9`, `*`, `#`, `A`–`D` as event codes 0–15.
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

pub fn event_of(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        _ => None,
    }
}

/// Reports each digit once, however many packets (and end retransmissions) carry it.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last_timestamp: Option<u32>,
}

impl DtmfReceiver {
    /// Feeds one telephone-event payload with its RTP timestamp; returns a new digit.
    pub fn on_payload(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        if payload.len() < 4 || self.last_timestamp == Some(timestamp) {
            return None;
        }
        self.last_timestamp = Some(timestamp);
        digit_of(payload[0])
    }
}

/// The payloads that send `digit` for `duration_samples` (at 8 kHz), one per 20 ms, the
/// last repeated three times with the end bit (RFC 4733 §2.5.1.4).
pub fn payloads(digit: char, duration_samples: u16) -> Vec<[u8; 4]> {
    let Some(event) = event_of(digit) else { return Vec::new() };
    let volume = 10u8;
    let step = crate::SAMPLES_PER_FRAME as u16;
    let mut out = Vec::new();
    let mut duration = step;
    while duration < duration_samples {
        let d = duration.to_be_bytes();
        out.push([event, volume, d[0], d[1]]);
        // Near u16::MAX the next step would overflow; the end packets carry the full length.
        let Some(next) = duration.checked_add(step) else { break };
        duration = next;
    }
    let d = duration_samples.max(step).to_be_bytes();
    for _ in 0..3 {
        out.push([event, 0x80 | volume, d[0], d[1]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_map_both_ways() {
        for digit in "0123456789*#ABCD".chars() {
            assert_eq!(digit_of(event_of(digit).unwrap()), Some(digit));
        }
        assert_eq!(event_of('x'), None);
    }

    #[test]
    fn a_sent_digit_is_received_once() {
        let mut receiver = DtmfReceiver::default();
        let packets = payloads('7', 800);
        assert_eq!(packets.len(), 4 + 3);
        let got: Vec<char> = packets.iter().filter_map(|p| receiver.on_payload(1234, p)).collect();
        assert_eq!(got, vec!['7']);
        assert_eq!(receiver.on_payload(5678, &payloads('#', 160)[0]), Some('#'));
    }

    #[test]
    fn the_longest_digit_does_not_overflow_its_duration() {
        let packets = payloads('1', u16::MAX);
        assert_eq!(packets.last().map(|p| u16::from_be_bytes([p[2], p[3]])), Some(u16::MAX));
        let mut receiver = DtmfReceiver::default();
        for payload in [&[][..], &[0xff], &[200, 0, 0, 0], &[255, 255, 255, 255, 255]] {
            assert_eq!(receiver.on_payload(1, payload), None);
        }
    }
}
