//! The pacer: holds every trunk to its calls-per-second limit, as a pure state machine with
//! time as an input.
//!
//! Two steps per call. `admit` is asked when a call is created: it succeeds only if the call's
//! INVITE can leave now, counting INVITEs sent in the last second plus calls admitted and not
//! yet sent; otherwise it says when to retry. `send` is asked right before the INVITE goes on
//! the wire and counts only real sends, so even an INVITE delayed after admission never makes
//! a one-second window hold more than the limit; when it cannot go yet, it says until when to
//! wait.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

/// Which trunk a call leaves through: INVITEs are counted per key.
pub type TrunkKey = String;

#[derive(Debug, Default)]
pub struct Pacer {
    trunks: HashMap<TrunkKey, TrunkWindow>,
}

#[derive(Debug, Default)]
struct TrunkWindow {
    /// When each INVITE of the last second left, oldest first.
    sent: VecDeque<Instant>,
    /// Calls admitted whose INVITE has not left yet.
    admitted: u32,
}

/// Proof of admission; handed back to `send` or `release`.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an admission holds a slot until it is sent or released"]
pub struct Admission {
    trunk: TrunkKey,
}

impl TrunkWindow {
    fn prune(&mut self, now: Instant) {
        while self.sent.front().is_some_and(|sent| now.duration_since(*sent) >= WINDOW) {
            self.sent.pop_front();
        }
    }

    /// When the `n`-th oldest send leaves the window (`n` counted from 1).
    fn expiry_of(&self, n: usize) -> Option<Instant> {
        self.sent.get(n.checked_sub(1)?).map(|sent| *sent + WINDOW)
    }
}

impl Pacer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits a call on `trunk` (limit `cps`) if its INVITE may leave now; else `Err(after)`:
    /// retrying after that long will find room, unless others take it first.
    pub fn admit(&mut self, trunk: &str, cps: u32, now: Instant) -> Result<Admission, Duration> {
        let window = self.trunks.entry(trunk.to_owned()).or_default();
        window.prune(now);
        let in_use = window.sent.len() + window.admitted as usize;
        let cps = cps.max(1) as usize;
        if in_use < cps {
            window.admitted += 1;
            return Ok(Admission { trunk: trunk.to_owned() });
        }
        // Room appears when enough sends leave the window; admitted calls are about to send,
        // so they count as sends happening now.
        let n_to_expire = in_use - cps + 1;
        let at = window.expiry_of(n_to_expire).unwrap_or(now + WINDOW);
        Err(at.saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    /// The admitted call's INVITE is about to leave: `Ok` records it; `Err(until)` means wait
    /// until then and ask again.
    pub fn send(&mut self, admission: &Admission, cps: u32, now: Instant) -> Result<(), Instant> {
        let window = self.trunks.entry(admission.trunk.clone()).or_default();
        window.prune(now);
        let cps = cps.max(1) as usize;
        if window.sent.len() < cps {
            window.sent.push_back(now);
            window.admitted = window.admitted.saturating_sub(1);
            return Ok(());
        }
        Err(window.expiry_of(window.sent.len() - cps + 1).unwrap_or(now + WINDOW))
    }

    /// The admitted call will not send (it was refused or stopped before dialing).
    pub fn release(&mut self, admission: Admission) {
        if let Some(window) = self.trunks.get_mut(&admission.trunk) {
            window.admitted = window.admitted.saturating_sub(1);
        }
    }

    /// Confirms a send that happened before `send` was asked: for tests.
    #[cfg(test)]
    fn sent_in_window(&mut self, trunk: &str, now: Instant) -> usize {
        let window = self.trunks.entry(trunk.to_owned()).or_default();
        window.prune(now);
        window.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Admits and sends at once; `Err(retry)` if not admitted.
    fn call(pacer: &mut Pacer, trunk: &str, cps: u32, now: Instant) -> Result<(), Duration> {
        let admission = pacer.admit(trunk, cps, now)?;
        pacer.send(&admission, cps, now).expect("an admitted call sends at once");
        Ok(())
    }

    #[test]
    fn a_burst_gets_exactly_the_limit_and_a_retry_after_that_succeeds() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let results: Vec<_> = (0..20).map(|i| call(&mut pacer, "telnyx", 16, t0 + ms(i))).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 16);
        let retry = results[16].unwrap_err();
        assert_eq!(retry, ms(1000 - 16), "the first send (at t0) leaves the window at t0 + 1 s");
        assert!(call(&mut pacer, "telnyx", 16, t0 + ms(16) + retry - ms(1)).is_err(), "one ms early is still full");
        assert!(call(&mut pacer, "telnyx", 16, t0 + ms(16) + retry).is_ok(), "the advertised retry succeeds");
    }

    #[test]
    fn the_window_slides_so_no_second_ever_holds_more_than_the_limit() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let mut sends = Vec::new();
        // Offer a call every 7 ms for five seconds at 5 CPS.
        for i in 0..700 {
            let now = t0 + ms(i * 7);
            if call(&mut pacer, "twilio", 5, now).is_ok() {
                sends.push(now);
            }
        }
        for (i, start) in sends.iter().enumerate() {
            let in_window = sends[i..].iter().take_while(|t| t.duration_since(*start) < WINDOW).count();
            assert!(in_window <= 5, "window from send {i} holds {in_window}");
        }
        assert!((24..=26).contains(&sends.len()), "about 5 per second for 5 s: {}", sends.len());
    }

    #[test]
    fn trunks_are_paced_independently() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        assert!(call(&mut pacer, "a", 1, t0).is_ok());
        assert!(call(&mut pacer, "a", 1, t0).is_err());
        assert!(call(&mut pacer, "b", 1, t0).is_ok());
    }

    #[test]
    fn admitted_calls_count_until_sent_or_released() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let first = pacer.admit("t", 2, t0).unwrap();
        let second = pacer.admit("t", 2, t0).unwrap();
        assert!(pacer.admit("t", 2, t0).is_err(), "two admitted, none sent: full");
        pacer.release(second);
        let third = pacer.admit("t", 2, t0).unwrap();
        pacer.send(&first, 2, t0).unwrap();
        pacer.send(&third, 2, t0 + ms(10)).unwrap();
        assert_eq!(pacer.sent_in_window("t", t0 + ms(10)), 2);
    }

    #[test]
    fn a_send_waits_when_the_limit_fell_after_admission() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        call(&mut pacer, "t", 2, t0).unwrap();
        let admitted = pacer.admit("t", 2, t0 + ms(10)).unwrap();
        // The limit drops to 1 before the second INVITE leaves: it waits for the first to age out.
        assert_eq!(pacer.send(&admitted, 1, t0 + ms(20)), Err(t0 + ms(1000)));
        assert_eq!(pacer.send(&admitted, 1, t0 + ms(1000)), Ok(()));
        assert_eq!(pacer.sent_in_window("t", t0 + ms(1000)), 1);
    }

    #[test]
    fn lowering_the_limit_mid_flight_takes_effect_at_once_and_raising_it_too() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        for i in 0..4 {
            call(&mut pacer, "t", 16, t0 + ms(i)).unwrap();
        }
        assert!(call(&mut pacer, "t", 3, t0 + ms(10)).is_err(), "4 sent in this second, limit now 3");
        let retry = call(&mut pacer, "t", 3, t0 + ms(10)).unwrap_err();
        assert_eq!(retry, ms(1001 - 10), "two sends must leave: the second left at t0+1ms");
        assert!(call(&mut pacer, "t", 8, t0 + ms(10)).is_ok(), "raised to 8: room again");
    }

    #[test]
    fn a_send_exactly_one_second_later_is_in_the_next_window() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        call(&mut pacer, "t", 1, t0).unwrap();
        assert!(call(&mut pacer, "t", 1, t0 + ms(999)).is_err());
        assert!(call(&mut pacer, "t", 1, t0 + ms(1000)).is_ok());
    }
}
