//! Operation mixes and the deterministic pseudo-random choices of the load generators.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Checkout,
    FindOrder,
    FindItem,
    FindUser,
    AddStock,
    AddFunds,
    AddItem,
    Health,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::Checkout,
        OpKind::FindOrder,
        OpKind::FindItem,
        OpKind::FindUser,
        OpKind::AddStock,
        OpKind::AddFunds,
        OpKind::AddItem,
        OpKind::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Checkout => "checkout",
            OpKind::FindOrder => "find_order",
            OpKind::FindItem => "find_item",
            OpKind::FindUser => "find_user",
            OpKind::AddStock => "add_stock",
            OpKind::AddFunds => "add_funds",
            OpKind::AddItem => "add_item",
            OpKind::Health => "health",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MixError {
    #[error("mix entry {0:?} is not name=weight")]
    Syntax(String),
    #[error("unknown operation {0:?} (checkout, find_order, find_item, find_user, add_stock, add_funds, add_item, health, read, add)")]
    UnknownOp(String),
    #[error("weight of {0:?} must be a non-negative number")]
    Weight(String),
    #[error("the mix has no positive weight")]
    Empty,
}

/// Weighted choice among operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Cumulative integer weights.
    entries: Vec<(OpKind, u64)>,
    total: u64,
}

const SCALE: f64 = 1_000_000.0;

impl Mix {
    pub fn single(op: OpKind) -> Self {
        Self {
            entries: vec![(op, 1)],
            total: 1,
        }
    }

    /// Parses "checkout=80,read=15,add=5" (":" works too).
    pub fn parse(s: &str) -> Result<Self, MixError> {
        let mut weights: BTreeMap<OpKind, f64> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once(['=', ':'])
                .ok_or_else(|| MixError::Syntax(part.to_string()))?;
            let name = name.trim();
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| MixError::Weight(name.to_string()))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(MixError::Weight(name.to_string()));
            }
            let ops: Vec<OpKind> = match name {
                "read" => vec![OpKind::FindOrder, OpKind::FindItem, OpKind::FindUser],
                "add" => vec![OpKind::AddStock, OpKind::AddFunds],
                n => vec![OpKind::ALL
                    .into_iter()
                    .find(|o| o.name() == n)
                    .ok_or_else(|| MixError::UnknownOp(n.to_string()))?],
            };
            let share = w / ops.len() as f64;
            for op in ops {
                *weights.entry(op).or_insert(0.0) += share;
            }
        }
        let mut entries = Vec::new();
        let mut total = 0u64;
        for (op, w) in weights {
            let iw = (w * SCALE).round() as u64;
            if iw > 0 {
                total += iw;
                entries.push((op, total));
            }
        }
        if total == 0 {
            return Err(MixError::Empty);
        }
        Ok(Self { entries, total })
    }

    /// The operation for a uniformly random `r`.
    pub fn pick(&self, r: u64) -> OpKind {
        let x = r % self.total;
        self.entries
            .iter()
            .find(|(_, cum)| x < *cum)
            .map_or(OpKind::Checkout, |(op, _)| *op)
    }

    /// Fraction of each operation.
    pub fn fractions(&self) -> BTreeMap<String, f64> {
        let mut prev = 0u64;
        let mut out = BTreeMap::new();
        for (op, cum) in &self.entries {
            out.insert(
                op.name().to_string(),
                (cum - prev) as f64 / self.total as f64,
            );
            prev = *cum;
        }
        out
    }
}

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `stream`-th random number of request `seq` under `seed` (deterministic).
pub fn rand_for(seed: u64, seq: u64, stream: u64) -> u64 {
    splitmix64(seed ^ splitmix64(seq.wrapping_mul(0x0000_0100_0000_01B3) ^ stream))
}

/// A seed from the clock, when none is given.
pub fn default_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED);
    splitmix64(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_expand() {
        let m = Mix::parse("checkout=80, read=15 ,add:5").expect("parse");
        let f = m.fractions();
        assert!((f["checkout"] - 0.80).abs() < 1e-9);
        assert!((f["find_order"] - 0.05).abs() < 1e-9);
        assert!((f["find_user"] - 0.05).abs() < 1e-9);
        assert!((f["add_stock"] - 0.025).abs() < 1e-9);
        assert_eq!(f.len(), 6);
        assert_eq!(
            Mix::parse("checkout=1").expect("parse").fractions(),
            Mix::single(OpKind::Checkout).fractions()
        );
        assert_eq!(Mix::parse("checkout=0"), Err(MixError::Empty));
        assert_eq!(Mix::parse(""), Err(MixError::Empty));
        assert!(matches!(Mix::parse("buy=1"), Err(MixError::UnknownOp(_))));
        assert!(matches!(Mix::parse("checkout"), Err(MixError::Syntax(_))));
        assert!(matches!(
            Mix::parse("checkout=-1"),
            Err(MixError::Weight(_))
        ));
    }

    #[test]
    fn pick_follows_weights() {
        let m = Mix::parse("checkout=3,find_order=1").expect("parse");
        let n = 100_000u64;
        let checkouts = (0..n)
            .filter(|&i| m.pick(rand_for(42, i, 0)) == OpKind::Checkout)
            .count() as f64;
        assert!((checkouts / n as f64 - 0.75).abs() < 0.01, "{checkouts}");
    }

    #[test]
    fn random_numbers_are_deterministic_and_spread() {
        assert_eq!(rand_for(1, 2, 3), rand_for(1, 2, 3));
        assert_ne!(rand_for(1, 2, 3), rand_for(1, 2, 4));
        assert_ne!(rand_for(1, 2, 3), rand_for(2, 2, 3));
        let buckets = 10u64;
        let mut hist = [0u32; 10];
        for i in 0..100_000 {
            hist[(rand_for(7, i, 0) % buckets) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{hist:?}"
        );
    }
}
