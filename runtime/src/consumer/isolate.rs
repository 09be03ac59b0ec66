//! Finding the items a batch fails on, so that only they fail.
//!
//! A batch is applied as one unit. When it fails because of its data (see
//! [`Fault`]), it is halved and each half applied on its own, again and
//! again, until the failing item stands alone; that item is rejected (its
//! handler gives it a final outcome) and every other item is applied. One bad
//! item among `n` costs about `2·log2(n)` extra applications, milliseconds
//! each, so it cannot hold the others up for more than a moment.
//!
//! A transient fault (a database or NATS outage) says nothing about the
//! items: splitting would only multiply the failures, so it ends the search
//! and the caller retries the whole batch. Re-applying the halves that
//! already went through is harmless: every handler is idempotent.

use super::{Fault, Handler};

/// Applies `items`, rejecting those the handler cannot apply because of
/// their data. Returns how many were rejected, or the first transient error
/// (and the error of a rejection that failed itself).
pub(super) async fn apply_isolating<T, H>(handler: &H, items: &[T]) -> Result<usize, H::Error>
where
    H: Handler<T>,
    T: Sync,
{
    let mut rejected = 0;
    // A stack of the groups still to apply, the next one on top, so items
    // are applied in their order.
    let mut groups = vec![items];
    while let Some(group) = groups.pop() {
        if group.is_empty() {
            continue;
        }
        let error = match handler.apply(group).await {
            Ok(()) => continue,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => e,
        };
        match group {
            [item] => {
                let cause = error.to_string();
                tracing::warn!(consumer = handler.name(), %cause, "item cannot be applied; rejecting it");
                handler.reject(item, &cause).await?;
                rejected += 1;
            }
            _ => {
                let (first, second) = group.split_at(group.len() / 2);
                groups.push(second);
                groups.push(first);
            }
        }
    }
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum FakeError {
        #[error("item {0} is bad")]
        Data(u32),
        #[error("database down")]
        Down,
    }

    impl Fault for FakeError {
        fn is_transient(&self) -> bool {
            matches!(self, FakeError::Down)
        }
    }

    /// Applies all of a group or none: fails on any bad item, or on every
    /// call while `down`.
    #[derive(Default)]
    struct Fake {
        bad: Vec<u32>,
        down: bool,
        applied: Mutex<Vec<u32>>,
        rejected: Mutex<Vec<u32>>,
        calls: Mutex<usize>,
    }

    impl Handler<u32> for Fake {
        type Error = FakeError;

        fn name(&self) -> &'static str {
            "fake"
        }

        async fn apply(&self, items: &[u32]) -> Result<(), FakeError> {
            *self.calls.lock().unwrap() += 1;
            if self.down {
                return Err(FakeError::Down);
            }
            if let Some(bad) = items.iter().find(|i| self.bad.contains(i)) {
                return Err(FakeError::Data(*bad));
            }
            self.applied.lock().unwrap().extend_from_slice(items);
            Ok(())
        }

        async fn reject(&self, item: &u32, cause: &str) -> Result<(), FakeError> {
            assert_eq!(
                cause,
                format!("item {item} is bad"),
                "the cause is the item's own"
            );
            self.rejected.lock().unwrap().push(*item);
            Ok(())
        }

        async fn dead_letter(&self, _: &serde_json::Value, _: &str) -> Result<(), FakeError> {
            unreachable!("nothing is undecodable here")
        }
    }

    fn run(fake: &Fake, items: &[u32]) -> Result<usize, FakeError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(apply_isolating(fake, items))
    }

    #[test]
    fn a_good_batch_is_applied_in_one_go() {
        let fake = Fake::default();
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(run(&fake, &items).unwrap(), 0);
        assert_eq!(*fake.applied.lock().unwrap(), items);
        assert_eq!(*fake.calls.lock().unwrap(), 1);
    }

    #[test]
    fn only_the_bad_items_are_rejected_and_every_other_is_applied_once() {
        for bad in [
            vec![0],
            vec![187],
            vec![93],
            vec![5, 6, 150],
            (0..188).collect(),
        ] {
            let fake = Fake {
                bad: bad.clone(),
                ..Fake::default()
            };
            let items: Vec<u32> = (0..188).collect();
            assert_eq!(run(&fake, &items).unwrap(), bad.len());
            let good: Vec<u32> = items.iter().copied().filter(|i| !bad.contains(i)).collect();
            assert_eq!(
                *fake.applied.lock().unwrap(),
                good,
                "each good item once, in order"
            );
            assert_eq!(*fake.rejected.lock().unwrap(), bad);
        }
    }

    #[test]
    fn one_bad_item_costs_a_logarithmic_number_of_attempts() {
        let fake = Fake {
            bad: vec![100],
            ..Fake::default()
        };
        let items: Vec<u32> = (0..188).collect();
        run(&fake, &items).unwrap();
        // log2(188) < 8 halvings, each trying two halves.
        let calls = *fake.calls.lock().unwrap();
        assert!(calls <= 1 + 2 * 8, "{calls} applications");
    }

    #[test]
    fn a_transient_error_is_not_split_but_returned() {
        let fake = Fake {
            bad: vec![3],
            down: true,
            ..Fake::default()
        };
        let items: Vec<u32> = (0..10).collect();
        assert!(matches!(run(&fake, &items), Err(FakeError::Down)));
        assert_eq!(*fake.calls.lock().unwrap(), 1, "tried once, as a whole");
        assert!(fake.rejected.lock().unwrap().is_empty(), "nothing rejected");
        assert!(fake.applied.lock().unwrap().is_empty());
    }
}
