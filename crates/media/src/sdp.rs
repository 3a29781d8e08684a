//! The audio part of SDP offer/answer (RFC 3264): PCMU, PCMA and telephone-event.

use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn static_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Self::Pcmu => crate::g711::linear_to_ulaw(sample),
            Self::Pcma => crate::g711::linear_to_alaw(sample),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            Self::Pcmu => crate::g711::ulaw_to_linear(code),
            Self::Pcma => crate::g711::alaw_to_linear(code),
        }
    }
}

/// What both sides agreed: where to send, in which codec, and the DTMF payload type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaParams {
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    /// RFC 4733 payload type, when both sides support telephone-event.
    pub dtmf_payload_type: Option<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("SDP has no usable connection address")]
    NoAddress,
    #[error("no common codec (we speak PCMU and PCMA)")]
    NoCommonCodec,
    #[error("malformed SDP: {0}")]
    Malformed(&'static str),
}

/// Our DTMF payload type in offers.
pub const OUR_DTMF_PT: u8 = 101;

/// An offer for one audio stream at `local`, codecs in `preference` order.
pub fn offer(local: SocketAddr, session_id: u64, preference: &[Codec]) -> String {
    let pts: Vec<String> = preference.iter().map(|c| c.static_payload_type().to_string()).collect();
    let mut sdp = header(local, session_id);
    sdp.push_str(&format!("m=audio {} RTP/AVP {} {OUR_DTMF_PT}\r\n", local.port(), pts.join(" ")));
    for codec in preference {
        sdp.push_str(&format!("a=rtpmap:{} {}/8000\r\n", codec.static_payload_type(), codec.name()));
    }
    sdp.push_str(&format!("a=rtpmap:{OUR_DTMF_PT} telephone-event/8000\r\na=fmtp:{OUR_DTMF_PT} 0-16\r\na=ptime:20\r\na=sendrecv\r\n"));
    sdp
}

/// The answer to `remote_offer` from `local`: the first offered codec we speak.
pub fn answer(remote_offer: &str, local: SocketAddr, session_id: u64) -> Result<(String, MediaParams), SdpError> {
    let params = negotiate(remote_offer, &[Codec::Pcmu, Codec::Pcma])?;
    let mut sdp = header(local, session_id);
    let mut pts = vec![params.payload_type.to_string()];
    if let Some(dtmf) = params.dtmf_payload_type {
        pts.push(dtmf.to_string());
    }
    sdp.push_str(&format!("m=audio {} RTP/AVP {}\r\n", local.port(), pts.join(" ")));
    sdp.push_str(&format!("a=rtpmap:{} {}/8000\r\n", params.payload_type, params.codec.name()));
    if let Some(dtmf) = params.dtmf_payload_type {
        sdp.push_str(&format!("a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-16\r\n"));
    }
    sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
    Ok((sdp, params))
}

/// Reads the peer's SDP (offer or answer): its address, and the first of its audio formats
/// that we `accept`.
pub fn negotiate(remote: &str, accept: &[Codec]) -> Result<MediaParams, SdpError> {
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut in_audio = false;
    let mut seen_audio = false;
    // Before the first m= line, c= is the session-level address.
    let mut in_session = true;
    let mut port = 0u16;
    let mut formats: Vec<u8> = Vec::new();
    let mut rtpmaps: Vec<(u8, String)> = Vec::new();
    for line in remote.lines() {
        let line = line.trim_end_matches('\r');
        let Some((kind, value)) = line.split_once('=') else { continue };
        match kind {
            "m" => {
                in_session = false;
                let mut fields = value.split_whitespace();
                let media = fields.next().unwrap_or_default();
                in_audio = media == "audio" && !seen_audio;
                if in_audio {
                    // `port[/count]` (RFC 4566 §5.14), digits only, a u16. Port 0 is a
                    // disabled stream (RFC 3264 §5.1): skip it and look for another.
                    let raw_port = fields.next().unwrap_or_default();
                    let raw_port = raw_port.split_once('/').map_or(raw_port, |(port, _count)| port);
                    port = parse_digits(raw_port).ok_or(SdpError::Malformed("m= port"))?;
                    if port == 0 {
                        in_audio = false;
                        continue;
                    }
                    seen_audio = true;
                    let _proto = fields.next();
                    formats = fields.filter_map(parse_digits).collect();
                }
            }
            "c" => {
                let ip = value.split_whitespace().nth(2).and_then(|a| a.split('/').next()).and_then(|a| a.parse().ok());
                if in_audio {
                    media_ip = ip;
                } else if in_session {
                    session_ip = ip;
                }
            }
            "a" if in_audio => {
                if let Some(map) = value.strip_prefix("rtpmap:")
                    && let Some((pt, encoding)) = map.split_once(' ')
                    && let Some(pt) = parse_digits(pt)
                {
                    rtpmaps.push((pt, encoding.to_ascii_lowercase()));
                }
            }
            _ => {}
        }
    }
    if !seen_audio {
        return Err(SdpError::NoAudio);
    }
    let ip = media_ip.or(session_ip).ok_or(SdpError::NoAddress)?;
    let encoding_of = |pt: u8| rtpmaps.iter().find(|(p, _)| *p == pt).map(|(_, e)| e.as_str());
    let (codec, payload_type) = formats
        .iter()
        .find_map(|pt| {
            let codec = match (*pt, encoding_of(*pt)) {
                (0, None) => Codec::Pcmu,
                (8, None) => Codec::Pcma,
                (_, Some(e)) if e.starts_with("pcmu/8000") => Codec::Pcmu,
                (_, Some(e)) if e.starts_with("pcma/8000") => Codec::Pcma,
                _ => return None,
            };
            accept.contains(&codec).then_some((codec, *pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let dtmf_payload_type = formats.iter().copied().find(|pt| encoding_of(*pt).is_some_and(|e| e.starts_with("telephone-event/8000")));
    Ok(MediaParams { remote: SocketAddr::new(ip, port), codec, payload_type, dtmf_payload_type })
}

/// A number in ASCII digits that fits `T` (`str::parse` alone would take a leading `+`).
fn parse_digits<T: std::str::FromStr>(raw: &str) -> Option<T> {
    (!raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit())).then(|| raw.parse().ok()).flatten()
}

fn header(local: SocketAddr, session_id: u64) -> String {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    format!("v=0\r\no=uponai {session_id} {session_id} IN {family} {ip}\r\ns=uponai\r\nc=IN {family} {ip}\r\nt=0 0\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";

    #[test]
    fn an_answer_picks_the_first_offered_codec_we_speak() {
        let local: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        let (sdp, params) = answer(SIPP_OFFER, local, 1).unwrap();
        assert_eq!(
            params,
            MediaParams { remote: "127.0.0.1:6000".parse().unwrap(), codec: Codec::Pcma, payload_type: 8, dtmf_payload_type: Some(101) }
        );
        assert!(sdp.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 127.0.0.1"));
    }

    #[test]
    fn our_offer_reads_back_as_pcmu_first() {
        let local: SocketAddr = "10.0.0.5:30000".parse().unwrap();
        let sdp = offer(local, 7, &[Codec::Pcmu, Codec::Pcma]);
        let params = negotiate(&sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!((params.codec, params.remote, params.dtmf_payload_type), (Codec::Pcmu, local, Some(101)));
    }

    #[test]
    fn media_level_addresses_win_and_static_types_need_no_rtpmap() {
        let sdp = "v=0\r\nc=IN IP4 1.1.1.1\r\nm=video 5000 RTP/AVP 96\r\nm=audio 7000 RTP/AVP 18 0\r\nc=IN IP4 2.2.2.2\r\n";
        let params = negotiate(sdp, &[Codec::Pcmu]).unwrap();
        assert_eq!(params.remote, "2.2.2.2:7000".parse().unwrap());
        assert_eq!(params.payload_type, 0);
        assert_eq!(params.dtmf_payload_type, None);
    }

    #[test]
    fn unusable_offers_are_errors() {
        assert_eq!(negotiate("v=0\r\n", &[Codec::Pcmu]), Err(SdpError::NoAudio));
        assert_eq!(negotiate("v=0\r\nm=audio 1 RTP/AVP 0\r\n", &[Codec::Pcmu]), Err(SdpError::NoAddress));
        assert_eq!(negotiate("c=IN IP4 1.1.1.1\r\nm=audio 1 RTP/AVP 9\r\n", &[Codec::Pcmu]), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn out_of_range_numbers_are_malformed_and_a_disabled_stream_is_skipped() {
        for port in ["65536", "-1", "+5004", "18446744073709551615", "é"] {
            let sdp = format!("c=IN IP4 1.1.1.1\r\nm=audio {port} RTP/AVP 0\r\n");
            assert_eq!(negotiate(&sdp, &[Codec::Pcmu]), Err(SdpError::Malformed("m= port")), "{port}");
        }
        let sdp = "c=IN IP4 1.1.1.1\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004/2 RTP/AVP 256 +8 8\r\na=rtpmap:300 PCMU/8000\r\n";
        let params = negotiate(sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!((params.remote.port(), params.codec, params.payload_type), (5004, Codec::Pcma, 8));
    }
}
