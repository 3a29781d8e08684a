//! The pacer: holds every trunk to its calls-per-second limit, as a pure state machine with
//! time as an input.
//!
//! Two steps per call. `admit` is asked when a call is created: it gives the call a send slot
//! `1/cps` after the trunk's previous one (so INVITEs leave evenly spaced, not in bursts), and
//! admits it if that slot is less than a second away (so a burst of up to `cps` calls is
//! accepted and spread over the second); otherwise it says when to retry. `send` is asked right
//! before the INVITE goes on the wire: it waits for the slot and, as the hard guarantee, for
//! room in the sliding one-second window of real sends, so no window ever holds more than the
//! limit, even when the limit changes between admission and send.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);
/// Delivery to the wire jitters after the pacer releases an INVITE (task scheduling, the SIP
/// endpoint's queue). Counting sends over a slightly longer window, and spacing them by it,
/// keeps the trunk from ever seeing more than the limit in its own one-second windows. 50 ms,
/// not less: on a loaded 2-core machine the endpoint's send was seen 20-30 ms late, which a
/// 25 ms margin let through as 26 INVITEs in one second at 25 CPS.
const WIRE_MARGIN: Duration = Duration::from_millis(50);
const GUARDED_WINDOW: Duration = WINDOW.saturating_add(WIRE_MARGIN);

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
    /// The slot given to the last admitted call; the next is one spacing (at the limit in
    /// force then) later.
    last_slot: Option<Instant>,
    /// The last recorded send is between `send` and `left`: its INVITE is being prepared
    /// (the call's durable claim), so its time is provisional and the next send waits.
    pending: bool,
}

/// Proof of admission, with the call's send slot; handed back to `send` or `release`.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an admission holds a slot until it is sent or released"]
pub struct Admission {
    trunk: TrunkKey,
    slot: Instant,
}

impl Admission {
    /// The trunk whose window the call counts in.
    pub fn trunk(&self) -> &str {
        &self.trunk
    }

    /// When the INVITE is scheduled to leave.
    pub fn slot(&self) -> Instant {
        self.slot
    }
}

/// The spacing of INVITEs at `cps`, rounded up so that `cps + 1` never fit in the guarded
/// window.
fn spacing(cps: u32) -> Duration {
    let window_nanos = u64::try_from(GUARDED_WINDOW.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(window_nanos.div_ceil(u64::from(cps.max(1))))
}

impl TrunkWindow {
    fn prune(&mut self, now: Instant) {
        while self.sent.front().is_some_and(|sent| now.duration_since(*sent) >= GUARDED_WINDOW) {
            self.sent.pop_front();
        }
    }

    /// When the `n`-th oldest send leaves the window (`n` counted from 1).
    fn expiry_of(&self, n: usize) -> Option<Instant> {
        self.sent.get(n.checked_sub(1)?).map(|sent| *sent + GUARDED_WINDOW)
    }
}

impl Pacer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits a call on `trunk` (limit `cps`) with a send slot less than a second away; else
    /// `Err(after)`: retrying after that long will find room, unless others take it first.
    pub fn admit(&mut self, trunk: &str, cps: u32, now: Instant) -> Result<Admission, Duration> {
        let window = self.trunks.entry(trunk.to_owned()).or_default();
        window.prune(now);
        let gap = spacing(cps);
        let slot = window.last_slot.map_or(now, |last| (last + gap).max(now));
        // Up to `cps` calls may wait for their slots: the last of them leaves within a second.
        let horizon = gap * (cps.max(1) - 1);
        if slot > now + horizon {
            let after = slot - horizon - now;
            return Err(after.max(Duration::from_millis(1)));
        }
        window.admitted += 1;
        window.last_slot = Some(slot);
        Ok(Admission { trunk: trunk.to_owned(), slot })
    }

    /// The admitted call's INVITE is about to leave: `Ok` records it; `Err(until)` means wait
    /// until then and ask again (its slot has not come, or the window is full).
    pub fn send(&mut self, admission: &Admission, cps: u32, now: Instant) -> Result<(), Instant> {
        if now < admission.slot {
            return Err(admission.slot);
        }
        let window = self.trunks.entry(admission.trunk.clone()).or_default();
        window.prune(now);
        if window.pending {
            // The previous INVITE has not really left yet; ask again in a moment.
            return Err(now + Duration::from_millis(1));
        }
        // Sends held up (a claim waiting on the disk, a stalled task) must not catch up in a
        // bunch: every INVITE leaves at least one spacing after the previous real send,
        // whatever the slots said.
        if let Some(last) = window.sent.back()
            && now < *last + spacing(cps)
        {
            return Err(*last + spacing(cps));
        }
        let cps = cps.max(1) as usize;
        if window.sent.len() < cps {
            window.sent.push_back(now);
            window.pending = true;
            window.admitted = window.admitted.saturating_sub(1);
            return Ok(());
        }
        Err(window.expiry_of(window.sent.len() - cps + 1).unwrap_or(now + WINDOW))
    }

    /// The INVITE recorded by the last `send` on `trunk` leaves now: its time becomes `now`
    /// (later than recorded by however long its preparation took) and the next send may go.
    pub fn left(&mut self, trunk: &str, now: Instant) {
        if let Some(window) = self.trunks.get_mut(trunk)
            && window.pending
        {
            window.pending = false;
            if let Some(last) = window.sent.back_mut() {
                *last = (*last).max(now);
            }
        }
    }

    /// The admitted call will not send (it was refused or stopped before dialing).
    pub fn release(&mut self, admission: Admission) {
        if let Some(window) = self.trunks.get_mut(&admission.trunk) {
            window.admitted = window.admitted.saturating_sub(1);
            // Nobody is queued behind an unused slot: spacing restarts from the last real send.
            if window.admitted == 0 {
                window.last_slot = window.sent.back().copied();
            }
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

    /// Admits at `now` and sends at the call's slot; the send time, or `Err(retry)`.
    fn call(pacer: &mut Pacer, trunk: &str, cps: u32, now: Instant) -> Result<Instant, Duration> {
        let admission = pacer.admit(trunk, cps, now)?;
        let at = admission.slot();
        pacer.send(&admission, cps, at).expect("an admitted call sends at its slot");
        pacer.left(trunk, at);
        Ok(at)
    }

    fn busiest_second(sends: &[Instant]) -> usize {
        (0..sends.len()).map(|i| sends[i..].iter().take_while(|t| t.duration_since(sends[i]) < WINDOW).count()).max().unwrap_or(0)
    }

    #[test]
    fn a_burst_gets_exactly_the_limit_spread_over_the_second_and_a_retry_that_succeeds() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let results: Vec<_> = (0..20).map(|i| call(&mut pacer, "telnyx", 16, t0 + ms(i))).collect();
        let sends: Vec<Instant> = results.iter().filter_map(|r| r.ok()).collect();
        assert_eq!(sends.len(), 16);
        assert_eq!(sends[1] - sends[0], spacing(16), "evenly spaced, 1.05 s / 16 apart");
        assert!(sends[15] - t0 < WINDOW, "the whole burst leaves within the second");
        let retry = results[16].unwrap_err();
        assert!(call(&mut pacer, "telnyx", 16, t0 + ms(16) + retry - ms(1)).is_err(), "one ms early is still full");
        assert!(call(&mut pacer, "telnyx", 16, t0 + ms(16) + retry).is_ok(), "the advertised retry succeeds");
    }

    #[test]
    fn steady_pressure_gives_the_rate_evenly_and_no_second_above_the_limit() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let mut sends = Vec::new();
        // Offer a call every 7 ms for five seconds at 5 CPS.
        for i in 0..700 {
            if let Ok(at) = call(&mut pacer, "twilio", 5, t0 + ms(i * 7)) {
                sends.push(at);
            }
        }
        assert!(busiest_second(&sends) <= 5);
        assert!((24..=30).contains(&sends.len()), "about 5 per second for 5 s: {}", sends.len());
        let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g >= spacing(5)), "never closer than 1/cps");
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
    fn a_send_whose_invite_has_not_left_holds_the_next_and_its_time_moves_to_when_it_left() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let first = pacer.admit("t", 16, t0).unwrap();
        let second = pacer.admit("t", 16, t0).unwrap();
        pacer.send(&first, 16, t0).unwrap();
        // The first INVITE's claim is still being written when the second's slot comes.
        let held = pacer.send(&second, 16, second.slot());
        assert!(held.is_err(), "the next send waits while the previous one is pending");
        let left_at = t0 + ms(50);
        pacer.left("t", left_at);
        assert_eq!(pacer.send(&second, 16, second.slot()), Err(left_at + spacing(16)), "one spacing after the real send");
        assert_eq!(pacer.send(&second, 16, left_at + spacing(16)), Ok(()));
    }

    #[test]
    fn a_released_admission_gives_its_slot_back() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        let first = pacer.admit("t", 1, t0).unwrap();
        assert!(pacer.admit("t", 1, t0).is_err(), "one admitted at 1 CPS: full");
        pacer.release(first);
        let again = pacer.admit("t", 1, t0).unwrap();
        assert_eq!(again.slot(), t0);
        pacer.send(&again, 1, t0).unwrap();
        assert_eq!(pacer.sent_in_window("t", t0), 1);
    }

    #[test]
    fn a_send_waits_for_its_slot_and_when_the_limit_fell_after_admission() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        call(&mut pacer, "t", 2, t0).unwrap();
        let admitted = pacer.admit("t", 2, t0 + ms(10)).unwrap();
        assert_eq!(admitted.slot(), t0 + spacing(2));
        assert_eq!(pacer.send(&admitted, 2, t0 + ms(20)), Err(admitted.slot()), "not before its slot");
        // The limit drops to 1 before the second INVITE leaves: it waits for the first to age out.
        assert_eq!(pacer.send(&admitted, 1, admitted.slot()), Err(t0 + GUARDED_WINDOW));
        assert_eq!(pacer.send(&admitted, 1, t0 + GUARDED_WINDOW), Ok(()));
    }

    #[test]
    fn raising_the_limit_mid_flight_admits_more_at_once() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        call(&mut pacer, "t", 1, t0).unwrap();
        assert!(call(&mut pacer, "t", 1, t0 + ms(10)).is_err());
        assert!(call(&mut pacer, "t", 8, t0 + ms(10)).is_ok(), "raised to 8: room again");
    }

    #[test]
    fn the_next_send_comes_one_guarded_window_later() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new();
        call(&mut pacer, "t", 1, t0).unwrap();
        assert!(call(&mut pacer, "t", 1, t0 + ms(1049)).is_err());
        assert!(call(&mut pacer, "t", 1, t0 + ms(1050)).is_ok());
    }

    #[test]
    fn spacing_never_lets_cps_plus_one_fit_in_a_second_plus_the_margin() {
        for cps in 1..=50 {
            assert!(spacing(cps) * cps >= WINDOW + WIRE_MARGIN, "{cps}");
        }
    }
}
