//! Whisper log-mel features, same recipe as openai-whisper `log_mel_spectrogram`:
//! 16 kHz, n_fft 400 (periodic Hann), hop 160, center=True with reflect padding, |X|^2,
//! 80 Slaney mel filters (librosa defaults: htk=False, norm="slaney", fmax 8 kHz),
//! log10(max(x,1e-10)), clamp to max-8, (x+4)/4. Audio is zero-padded (30 s, like
//! `padding=N_SAMPLES`) and the output is exactly 80 x 3000 (row-major, mel-major).

use std::sync::Arc;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex32;

pub(crate) const SAMPLE_RATE: usize = 16000;
pub(crate) const N_FFT: usize = 400;
pub(crate) const HOP: usize = 160;
pub(crate) const N_MELS: usize = 80;
pub(crate) const N_FRAMES: usize = 3000; // 30 s
const N_BINS: usize = N_FFT / 2 + 1;

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) as [N_MELS][N_BINS].
fn mel_filters() -> Vec<[f32; N_BINS]> {
    let fft_freqs: Vec<f64> = (0..N_BINS).map(|i| i as f64 * SAMPLE_RATE as f64 / N_FFT as f64).collect();
    let (mmin, mmax) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let mel_f: Vec<f64> = (0..N_MELS + 2).map(|i| mel_to_hz(mmin + (mmax - mmin) * i as f64 / (N_MELS + 1) as f64)).collect();
    let mut w = vec![[0f32; N_BINS]; N_MELS];
    for m in 0..N_MELS {
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (b, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
            let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
            w[m][b] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

pub(crate) struct MelExtractor {
    fft: Arc<dyn rustfft::Fft<f32>>,
    window: [f32; N_FFT],
    filters: Vec<[f32; N_BINS]>,
}

impl MelExtractor {
    pub(crate) fn new() -> Self {
        let fft = FftPlanner::new().plan_fft_forward(N_FFT);
        let mut window = [0f32; N_FFT];
        for (n, w) in window.iter_mut().enumerate() {
            // torch.hann_window(400) is periodic
            *w = (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32;
        }
        Self { fft, window, filters: mel_filters() }
    }

    /// `audio`: mono f32 at 16 kHz, nominally in [-1, 1]; anything past 30 s is ignored.
    /// Returns N_MELS * N_FRAMES values, index [mel * N_FRAMES + frame].
    pub(crate) fn compute(&self, audio: &[f32]) -> Vec<f32> {
        let audio = &audio[..audio.len().min(N_FRAMES * HOP)];
        let len = audio.len();
        let pad = N_FFT / 2;
        // sample at padded position p (center=True, reflect at the start, zeros after the end)
        let sample = |p: isize| -> f32 {
            let i = p - pad as isize;
            let i = if i < 0 { -i } else { i } as usize; // reflect (excludes the edge sample)
            if i < len { audio[i] } else { 0.0 }
        };
        // Frames whose window starts beyond the audio are all zeros: power 0 -> log10(1e-10).
        let live = ((len + pad) / HOP + 1).min(N_FRAMES);
        let mut log = vec![-10f32; N_MELS * N_FRAMES];
        let mut buf = vec![Complex32::new(0.0, 0.0); N_FFT];
        let mut scratch = vec![Complex32::new(0.0, 0.0); self.fft.get_inplace_scratch_len()];
        let mut power = [0f32; N_BINS];
        for t in 0..live {
            let start = (t * HOP) as isize;
            for (n, (slot, weight)) in buf.iter_mut().zip(&self.window).enumerate() {
                *slot = Complex32::new(sample(start + n as isize) * weight, 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (p, bin) in power.iter_mut().zip(&buf) {
                *p = bin.norm_sqr();
            }
            for (m, filter) in self.filters.iter().enumerate() {
                let e: f32 = filter.iter().zip(power.iter()).map(|(w, p)| w * p).sum();
                log[m * N_FRAMES + t] = e.max(1e-10).log10();
            }
        }
        let max = log.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        for v in log.iter_mut() {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        log
    }
}
