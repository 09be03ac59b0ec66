//! The sweep's supply of unpaid orders: every checkout of a sweep takes an order that no earlier
//! request of the sweep took (a repeat checkout of a paid order answers at once and would
//! flatter the figures), and the data is initialised afresh before a step that could run out.

use super::saturation::CurvePoint;
use crate::load::LoadMode;
use std::time::Duration;

/// Orders `0..orders` as `batch_init` made them, of which `0..next` are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Supply {
    orders: u64,
    next: u64,
}

impl Supply {
    /// Freshly initialised data: every order unpaid.
    pub fn new(orders: u64) -> Self {
        Self { orders, next: 0 }
    }

    pub fn remaining(&self) -> u64 {
        self.orders.saturating_sub(self.next)
    }

    /// The first order the next step takes.
    pub fn first(&self) -> u64 {
        self.next
    }

    /// After `batch_init` ran again: every order is unpaid again.
    pub fn renew(&mut self) {
        self.next = 0;
    }

    /// A step took `n` orders.
    pub fn take(&mut self, n: u64) {
        self.next = self.next.saturating_add(n).min(self.orders);
    }
}

/// How many orders a step (warm-up included, `total`) may take. Open loop: every arrival of
/// the schedule (`rate × total`, dropped ones included: they hold their sequence number).
/// Closed loop: the previous step's throughput per client times this step's clients, with a
/// fifth again as margin (a closed loop's throughput grows at most in proportion to its
/// clients); the first step has no estimate, and the request cap of each step stops it before
/// it reuses an order.
pub fn need(mode: &LoadMode, total: Duration, previous: Option<&CurvePoint>) -> u64 {
    let s = total.as_secs_f64();
    match (mode, previous) {
        (LoadMode::Open { rate }, _) => (rate * s).ceil() as u64,
        (LoadMode::Closed { clients }, Some(p)) if p.level > 0.0 => {
            (p.throughput / p.level * *clients as f64 * s * 1.2).ceil() as u64
        }
        (LoadMode::Closed { .. }, _) => 0,
    }
}

/// The orders a finished step took, and whether it stopped because there were no more: a closed
/// loop took one per request sent, an open loop one per arrival of its schedule.
pub fn taken(mode: &LoadMode, need: u64, cap: u64, issued: u64) -> (u64, bool) {
    match mode {
        LoadMode::Open { .. } => (need.min(cap), need > cap),
        LoadMode::Closed { .. } => (issued.min(cap), issued >= cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supply_hands_out_each_order_once_until_renewed() {
        let mut s = Supply::new(1_000);
        assert_eq!((s.first(), s.remaining()), (0, 1_000));
        s.take(600);
        assert_eq!((s.first(), s.remaining()), (600, 400));
        s.take(600);
        assert_eq!(s.remaining(), 0);
        s.renew();
        assert_eq!((s.first(), s.remaining()), (0, 1_000));
    }

    #[test]
    fn what_a_step_needs_and_takes() {
        let t = Duration::from_secs(11);
        let open = LoadMode::Open { rate: 1_000.0 };
        let closed = LoadMode::Closed { clients: 64 };
        let at_16 = CurvePoint {
            level: 16.0,
            throughput: 500.0,
            p50_ms: 30.0,
            p99_ms: 60.0,
            completed: 5_500,
            errors: 0,
            dropped: 0,
        };
        assert_eq!(need(&open, t, Some(&at_16)), 11_000);
        // 500/s at 16 clients: at most 2,000/s at 64, and a fifth more.
        assert_eq!(need(&closed, t, Some(&at_16)), 26_400);
        assert_eq!(need(&closed, t, None), 0);
        // An open loop's arrivals hold their numbers whether sent or dropped.
        assert_eq!(taken(&open, 11_000, 50_000, 9_000), (11_000, false));
        assert_eq!(taken(&open, 11_000, 5_000, 5_000), (5_000, true));
        assert_eq!(taken(&closed, 0, 50_000, 20_000), (20_000, false));
        assert_eq!(taken(&closed, 0, 20_000, 20_000), (20_000, true));
    }
}
