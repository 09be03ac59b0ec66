//! The documented bounds on every number a client can send, and the
//! domain types that hold a value inside them.
//!
//! Each bound is far above any real shop and small enough that the sums the
//! services compute from bounded values (an order's total, a line's
//! quantity × price, a balance plus what a compensation gives back) stay
//! inside PostgreSQL's `BIGINT` with room to spare. A value beyond its
//! bound is refused at the edge (the api, and again by the owning service,
//! which does not trust its callers) with a 400 naming the bound, and the
//! SQL statements and `CHECK`s enforce the same numbers.

use std::fmt;

/// Most units in one order line, and of one item summed over an order's
/// lines (10⁹).
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Highest item price (10⁹), so `quantity × price` ≤ 10¹⁸.
pub const MAX_PRICE: i64 = 1_000_000_000;
/// Largest single amount (10¹⁵): a stock add/subtract, `add_funds`, `pay`,
/// and an order's `total_cost`.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
/// Highest stock or credit an add (or `batch_init`) may produce (10¹⁸).
/// Compensations (release, refund) may go past it: they only give back what
/// a saga took, and the 8·10¹⁸ left below `i64::MAX` absorbs them.
pub const MAX_BALANCE: i64 = 1_000_000_000_000_000_000;
/// Default of `ORDER_MAX_LINES`: most `addItem` lines one order may hold, so
/// that one checkout's messages always fit `NATS_MAX_MESSAGE_BYTES`.
pub const DEFAULT_MAX_LINES: usize = 1_000;
/// Highest `ORDER_MAX_LINES` accepted.
pub const MAX_LINES_CEILING: usize = 10_000;
/// Longest ID (bytes) the api accepts in a path, hence in any message.
pub const MAX_ID_BYTES: usize = 128;

/// A value outside its documented bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} must be between {min} and {max}, got {value}")]
pub struct OutOfBounds {
    pub name: &'static str,
    pub value: i64,
    pub min: i64,
    pub max: i64,
}

/// Declares a bounded `i64` newtype; `new` is the only way in.
macro_rules! bounded {
    ($(#[$doc:meta])* $ty:ident, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(i64);

        impl $ty {
            pub const MIN: i64 = $min;
            pub const MAX: i64 = $max;

            /// `value` if it is inside the bounds; `name` labels the refusal.
            pub fn new(name: &'static str, value: i64) -> Result<Self, OutOfBounds> {
                if (Self::MIN..=Self::MAX).contains(&value) {
                    Ok(Self(value))
                } else {
                    Err(OutOfBounds {
                        name,
                        value,
                        min: Self::MIN,
                        max: Self::MAX,
                    })
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }

            /// The sum, if it stays inside the bounds.
            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0
                    .checked_add(other.0)
                    .filter(|v| *v <= Self::MAX)
                    .map(Self)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

bounded!(
    /// Units of one item in an order line, or summed over an order: 1 to
    /// [`MAX_QUANTITY`].
    Quantity,
    1,
    MAX_QUANTITY
);
bounded!(
    /// An item's price: 0 to [`MAX_PRICE`].
    Price,
    0,
    MAX_PRICE
);
bounded!(
    /// One amount of stock or money moved, or an order's total: 0 to
    /// [`MAX_AMOUNT`].
    Amount,
    0,
    MAX_AMOUNT
);
bounded!(
    /// A stock or credit level an add may produce: 0 to [`MAX_BALANCE`].
    Balance,
    0,
    MAX_BALANCE
);

impl Price {
    /// `quantity × price`, if it is a valid [`Amount`]. Never overflows:
    /// both factors are at most 10⁹.
    pub fn times(self, quantity: Quantity) -> Option<Amount> {
        Amount::new("line cost", self.0 * quantity.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_and_refusals_name_them() {
        assert_eq!(Quantity::new("q", 1).map(Quantity::get), Ok(1));
        assert_eq!(
            Quantity::new("q", MAX_QUANTITY).map(Quantity::get),
            Ok(MAX_QUANTITY)
        );
        for bad in [0, -1, MAX_QUANTITY + 1, i64::MAX, i64::MIN] {
            let e = Quantity::new("quantity", bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("quantity"), "{e}");
            assert!(e.to_string().contains("1000000000"), "{e}");
        }
        assert!(Price::new("p", 0).is_ok());
        assert!(Price::new("p", MAX_PRICE + 1).is_err());
        assert!(Amount::new("a", MAX_AMOUNT).is_ok());
        assert!(Amount::new("a", MAX_AMOUNT + 1).is_err());
        assert!(Balance::new("b", MAX_BALANCE + 1).is_err());
    }

    #[test]
    fn sums_and_products_stay_inside_or_are_none() {
        let big = Quantity::new("q", MAX_QUANTITY).unwrap();
        let one = Quantity::new("q", 1).unwrap();
        assert_eq!(big.checked_add(one), None);
        assert_eq!(
            Quantity::new("q", 2)
                .unwrap()
                .checked_add(one)
                .map(Quantity::get),
            Some(3)
        );
        let price = Price::new("p", MAX_PRICE).unwrap();
        // 10¹⁸ fits i64 but not an Amount.
        assert_eq!(price.times(big), None);
        assert_eq!(price.times(one).map(Amount::get), Some(MAX_PRICE));
        let a = Amount::new("a", MAX_AMOUNT).unwrap();
        assert_eq!(a.checked_add(Amount::new("a", 1).unwrap()), None);
    }

    #[test]
    fn compensations_have_room_above_every_balance() {
        // What a release or refund may add on top of MAX_BALANCE before the
        // BIGINT range ends: thousands of maximal orders in flight per account.
        let headroom = i64::MAX - MAX_BALANCE;
        assert!(headroom / MAX_AMOUNT > 8_000);
    }
}
