//! Whether a lone caller should look for company before it runs its call itself.
//!
//! A caller alone with an idle instance runs its batch on its own thread, which saves
//! two thread hand-offs. But an async runtime with one worker runs each request's
//! handler up to that point before it reads the next request, so under load every
//! caller finds itself alone, runs at batch 1, and requests never batch (on one CPU:
//! 1.0 rows a call, against 9–17 once they queue). Yielding once to the runtime first
//! lets it take in what else has arrived. That pass costs a lone client latency
//! (5–50 µs here), so yields that find nobody make the next ones rarer: after `k`
//! fruitless yields in a row only one lone caller in `2^k` yields (`k` ≤ 4), and one
//! yield that finds company makes every lone caller yield again.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

/// At most one lone caller in `2^MAX_BACKOFF` yields while yields find nobody.
const MAX_BACKOFF: u32 = 4;

#[derive(Debug, Default)]
pub(crate) struct CompanyProbe {
    /// Yields in a row that found nobody (at most `MAX_BACKOFF`).
    fruitless: AtomicU32,
    /// Lone callers so far (wrapping).
    lone: AtomicU32,
}

impl CompanyProbe {
    /// Asked by each lone caller: yield to the runtime before running here?
    pub fn should_yield(&self) -> bool {
        let backoff = self.fruitless.load(Relaxed);
        let nth = self.lone.fetch_add(1, Relaxed);
        nth.trailing_zeros() >= backoff
    }

    /// Told after each yield whether other callers had arrived by then.
    pub fn found(&self, company: bool) {
        let fruitless = match company {
            true => 0,
            false => (self.fruitless.load(Relaxed) + 1).min(MAX_BACKOFF),
        };
        self.fruitless.store(fruitless, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yields_in(probe: &CompanyProbe, callers: u32, company: bool) -> u32 {
        let mut yields = 0;
        for _ in 0..callers {
            if probe.should_yield() {
                yields += 1;
                probe.found(company);
            }
        }
        yields
    }

    #[test]
    fn fruitless_yields_back_off_to_one_in_sixteen_and_company_resets() {
        let probe = CompanyProbe::default();
        // Under load every yield finds company: every lone caller yields.
        assert_eq!(yields_in(&probe, 100, true), 100);
        // A lone client: yields thin out, then settle at one in 2^MAX_BACKOFF.
        let first = yields_in(&probe, 64, false);
        assert!((5..=12).contains(&first), "{first}");
        assert_eq!(yields_in(&probe, 1600, false), 100);
        // Load comes back: the next yield finds company and every caller yields again.
        let until_found = (0..32).take_while(|_| !probe.should_yield()).count();
        assert!(until_found < 16, "{until_found}");
        probe.found(true);
        assert_eq!(yields_in(&probe, 50, true), 50);
    }
}
