//! G.711 μ-law (PCMU) and A-law (PCMA), sample by sample (ITU-T G.711; the classic Sun
//! reference implementation's segment arithmetic).

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && pcm & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    // In range by construction: sign ≤ 0x80, exponent ≤ 7, mantissa ≤ 15.
    !((sign | (exponent << 4) | mantissa) as u8)
}

pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    let sample = if code & 0x80 != 0 { -magnitude } else { magnitude };
    // |sample| ≤ 32124.
    sample as i16
}

const ALAW_SEGMENT_ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let segment = ALAW_SEGMENT_ENDS.iter().position(|end| pcm <= *end).unwrap_or(8);
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let shift = if segment < 2 { 1 } else { segment };
    let code = ((segment as i32) << 4) | ((pcm >> shift) & 0x0F);
    (code ^ mask) as u8
}

pub fn alaw_to_linear(code: u8) -> i16 {
    let code = i32::from(code ^ 0x55);
    let mut magnitude = (code & 0x0F) << 4;
    let segment = (code & 0x70) >> 4;
    match segment {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => magnitude = (magnitude + 0x108) << (segment - 1),
    }
    // |magnitude| ≤ 32256.
    (if code & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_reference_points() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
    }

    #[test]
    fn every_code_decodes_and_re_encodes_to_itself() {
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "alaw {code:#x}");
            // μ-law has two zeros (0xFF and 0x7F); both decode to 0, which encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), code, "ulaw {code:#x}");
            }
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_segment_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(sample)));
            let s = i32::from(sample).clamp(-32_635, 32_635);
            assert!((u - s).abs() <= 1024, "ulaw {sample} -> {u}");
            assert!((a - i32::from(sample)).abs() <= 1024, "alaw {sample} -> {a}");
        }
    }
}
