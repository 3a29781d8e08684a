//! RTP packets (RFC 3550): fixed header, CSRCs and extension skipped, padding removed.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("packet shorter than its header")]
    Short,
    #[error("not RTP version 2")]
    Version,
    #[error("padding longer than the payload")]
    Padding,
}

impl<'a> Packet<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RtpError> {
        if bytes.len() < 12 {
            return Err(RtpError::Short);
        }
        if bytes[0] >> 6 != 2 {
            return Err(RtpError::Version);
        }
        let padding = bytes[0] & 0x20 != 0;
        let extension = bytes[0] & 0x10 != 0;
        let csrc_count = usize::from(bytes[0] & 0x0F);
        let mut offset = 12 + 4 * csrc_count;
        if extension {
            let header = bytes.get(offset..offset + 4).ok_or(RtpError::Short)?;
            let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
            offset += 4 + 4 * words;
        }
        let mut end = bytes.len();
        if offset > end {
            return Err(RtpError::Short);
        }
        if padding {
            let pad = usize::from(bytes[end - 1]);
            if pad == 0 || pad > end - offset {
                return Err(RtpError::Padding);
            }
            end -= pad;
        }
        Ok(Self {
            marker: bytes[1] & 0x80 != 0,
            payload_type: bytes[1] & 0x7F,
            sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
            timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            payload: &bytes[offset..end],
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip() {
        let payload = [1u8, 2, 3];
        let packet = Packet { marker: true, payload_type: 8, sequence: 65_535, timestamp: 160, ssrc: 0xDEAD_BEEF, payload: &payload };
        let mut bytes = Vec::new();
        packet.write(&mut bytes);
        assert_eq!(Packet::parse(&bytes).unwrap(), packet);
    }

    #[test]
    fn csrcs_extensions_and_padding_are_skipped() {
        let mut bytes = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        bytes.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // extension, one word
        bytes.extend_from_slice(&[42, 43, 0, 2]); // payload + 2 bytes padding
        let packet = Packet::parse(&bytes).unwrap();
        assert_eq!(packet.payload, &[42, 43]);
    }

    #[test]
    fn truncated_or_foreign_packets_are_errors() {
        assert_eq!(Packet::parse(&[0x80; 5]), Err(RtpError::Short));
        assert_eq!(Packet::parse(&[0x40; 12]), Err(RtpError::Version));
        let mut bytes = vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
        assert_eq!(Packet::parse(&bytes), Err(RtpError::Padding));
        bytes[0] = 0x90; // extension header missing
        assert_eq!(Packet::parse(&bytes), Err(RtpError::Short));
    }
}
