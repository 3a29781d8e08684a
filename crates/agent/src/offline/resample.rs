//! A rational polyphase resampler with a Kaiser-windowed sinc low-pass: Piper's 22,050 Hz
//! to the line's 8 kHz, and the line's 8 kHz to Whisper's 16 kHz. Linear interpolation
//! aliases audibly at 22,050 → 8,000 and costs Whisper words.

/// Resamples whole buffers from one rate to another.
#[derive(Debug)]
pub struct Resampler {
    up: usize,
    down: usize,
    half: usize,
    /// `up` phases of `2 * half` taps each.
    taps: Vec<f32>,
}

impl Resampler {
    /// `cutoff_hz` is the low-pass's −6 dB point, below the lower Nyquist; `half` the taps
    /// on each side, in input samples at the lower of the two rates' spacing.
    pub fn new(rate_in: u32, rate_out: u32, cutoff_hz: f64, half: usize, beta: f64) -> Self {
        let g = gcd(rate_in as usize, rate_out as usize);
        let (up, down) = (rate_out as usize / g, rate_in as usize / g);
        // Cycles per sample of the upsampled signal's input grid.
        let fc = cutoff_hz / f64::from(rate_in);
        let i0_beta = bessel_i0(beta);
        let width = 2 * half;
        let mut taps = vec![0f32; up * width];
        for phase in 0..up {
            let frac = phase as f64 / up as f64;
            let row = &mut taps[phase * width..(phase + 1) * width];
            let mut weights = vec![0f64; width];
            for (k, weight) in weights.iter_mut().enumerate() {
                let distance = frac + half as f64 - 1.0 - k as f64;
                let x = 2.0 * fc * distance;
                let sinc = if x.abs() < 1e-12 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) };
                let r = distance / half as f64;
                let window = if r.abs() >= 1.0 { 0.0 } else { bessel_i0(beta * (1.0 - r * r).sqrt()) / i0_beta };
                *weight = sinc * window;
            }
            // Unity gain at DC for every phase.
            let sum: f64 = weights.iter().sum();
            for (tap, weight) in row.iter_mut().zip(weights) {
                *tap = (weight / sum) as f32;
            }
        }
        Self { up, down, half, taps }
    }

    /// Piper's 22,050 Hz to 8 kHz (flat to 3.4 kHz, −22 dB at 3.9 kHz).
    pub fn piper_to_line() -> Self {
        Self::new(22_050, 8_000, 3_800.0, 138, 8.0)
    }

    /// The line's 8 kHz to Whisper's 16 kHz.
    pub fn line_to_whisper() -> Self {
        Self::new(8_000, 16_000, 3_900.0, 32, 8.0)
    }

    pub fn process(&self, input: &[f32]) -> Vec<f32> {
        let n_out = (input.len() * self.up).div_ceil(self.down);
        let width = 2 * self.half;
        let mut out = Vec::with_capacity(n_out);
        for n in 0..n_out {
            let position = n * self.down;
            let (i, phase) = (position / self.up, position % self.up);
            let row = &self.taps[phase * width..(phase + 1) * width];
            let start = i as isize - self.half as isize + 1;
            let mut acc = 0f32;
            for (k, tap) in row.iter().enumerate() {
                let j = start + k as isize;
                if j >= 0
                    && let Some(sample) = input.get(j as usize)
                {
                    acc += sample * tap;
                }
            }
            out.push(acc);
        }
        out
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    loop {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
        if term < 1e-12 * sum {
            return sum;
        }
        k += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, seconds: f64) -> Vec<f32> {
        (0..(f64::from(rate) * seconds) as usize)
            .map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        let middle = &x[x.len() / 4..3 * x.len() / 4];
        (middle.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt()
    }

    #[test]
    fn speech_band_tones_pass_and_tones_above_the_new_nyquist_are_removed() {
        let down = Resampler::piper_to_line();
        let kept = down.process(&tone(22_050, 1_000.0, 0.5));
        assert_eq!(kept.len(), 4_000);
        assert!((rms(&kept) - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.02, "{}", rms(&kept));
        let aliased = down.process(&tone(22_050, 6_000.0, 0.5));
        assert!(rms(&aliased) < 0.001, "6 kHz would alias to 2 kHz: {}", rms(&aliased));
        let up = Resampler::line_to_whisper().process(&tone(8_000, 1_000.0, 0.5));
        assert_eq!(up.len(), 8_000);
        assert!((rms(&up) - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.02, "{}", rms(&up));
    }
}
