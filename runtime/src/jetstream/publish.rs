//! Publishing batch messages: items packed into JSON arrays bounded by
//! size, each message with its deduplication ID, sent pipelined and retried
//! while NATS is away.

use std::{future::IntoFuture, time::Duration};

use async_nats::jetstream::{message::PublishMessage, Context};
use bytes::Bytes;

use super::JetStreamError;

/// A message to publish with a deduplication ID.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a repeat inside its duplicate window.
    /// It identifies one publish (kept when that publish is retried), not the
    /// work inside: the consumers' database keys are what make a repeat of
    /// the work harmless.
    pub msg_id: String,
    pub payload: Bytes,
}

impl Outgoing {
    /// `items` as JSON arrays (see [`contracts::messages::saga`]) of at most
    /// `max_bytes` each, in order, each with a fresh deduplication ID; no
    /// message for no items. An item that alone exceeds `max_bytes` is
    /// [`JetStreamError::TooLarge`].
    pub fn batch<T: serde::Serialize>(
        subject: String,
        items: &[T],
        max_bytes: usize,
    ) -> Result<Vec<Self>, JetStreamError> {
        let encoded = items
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| JetStreamError::Encode {
                subject: subject.clone(),
                source,
            })?;
        let payloads = split(&encoded, max_bytes).map_err(|bytes| JetStreamError::TooLarge {
            subject: subject.clone(),
            bytes,
            max: max_bytes,
        })?;
        Ok(payloads
            .into_iter()
            .map(|payload| Self {
                subject: subject.clone(),
                msg_id: uuid::Uuid::now_v7().to_string(),
                payload,
            })
            .collect())
    }

    /// Groups `(subject, item)` pairs by subject, then splits each group as
    /// [`Outgoing::batch`] does.
    pub fn batches<T: serde::Serialize>(
        items: impl IntoIterator<Item = (String, T)>,
        max_bytes: usize,
    ) -> Result<Vec<Self>, JetStreamError> {
        let mut by_subject: std::collections::BTreeMap<String, Vec<T>> = Default::default();
        for (subject, item) in items {
            by_subject.entry(subject).or_default().push(item);
        }
        let mut out = Vec::with_capacity(by_subject.len());
        for (subject, items) in by_subject {
            out.extend(Self::batch(subject, &items, max_bytes)?);
        }
        Ok(out)
    }
}

/// Packs encoded items, in order, into as few JSON arrays of at most
/// `max_bytes` as a greedy pass finds; `Err(size)` when one item does not
/// fit even alone.
fn split(encoded: &[Vec<u8>], max_bytes: usize) -> Result<Vec<Bytes>, usize> {
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for item in encoded {
        // `[item]` alone, or `,item` appended before the closing bracket.
        if item.len() + 2 > max_bytes {
            return Err(item.len() + 2);
        }
        if !current.is_empty() && current.len() + 1 + item.len() + 1 > max_bytes {
            current.push(b']');
            out.push(Bytes::from(std::mem::take(&mut current)));
        }
        current.push(if current.is_empty() { b'[' } else { b',' });
        current.extend_from_slice(item);
    }
    if !current.is_empty() {
        current.push(b']');
        out.push(Bytes::from(current));
    }
    Ok(out)
}

/// Publishes all messages pipelined (send all, then await the acks
/// together); returns once JetStream has stored every one of them.
pub async fn publish_all(js: &Context, messages: &[Outgoing]) -> Result<(), JetStreamError> {
    if messages.is_empty() {
        return Ok(());
    }
    let timer = crate::metrics::PUBLISH_DURATION.start_timer();
    let mut acks = Vec::with_capacity(messages.len());
    for m in messages {
        let publish = PublishMessage::build()
            .payload(m.payload.clone())
            .message_id(m.msg_id.clone());
        acks.push(
            js.send_publish(m.subject.clone(), publish)
                .await?
                .into_future(),
        );
    }
    futures::future::try_join_all(acks).await?;
    timer.observe_duration();
    Ok(())
}

/// Publishes like [`publish_all`], retrying with backoff (100 ms doubling to
/// 2 s) while NATS is unreachable, so that a NATS outage delays the work
/// instead of failing it; a retry reuses each message's ID, so what the
/// failed attempt did store is not stored twice. Gives up when `stop` is
/// cancelled (shutdown), returning the last error, and at once on an error
/// no retry can mend (a message larger than the server takes).
pub async fn publish_retrying(
    js: &Context,
    messages: &[Outgoing],
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), JetStreamError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match publish_all(js, messages).await {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot publish; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item-{i:04}")).collect()
    }

    fn decoded(messages: &[Outgoing]) -> Vec<String> {
        messages
            .iter()
            .flat_map(|m| serde_json::from_slice::<Vec<String>>(&m.payload).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_is_split_by_size_in_order() {
        let all = items(1000);
        // Each item is `"item-0000"`: 11 bytes, 12 with its comma.
        let messages = Outgoing::batch("s".into(), &all, 200).unwrap();
        assert!(messages.len() > 1);
        for m in &messages {
            assert!(m.payload.len() <= 200, "{} bytes", m.payload.len());
            // Greedy: a message holds as many items as fit (16 × 12 + 1 = 193).
            assert!(m.payload.len() >= 200 - 12 || std::ptr::eq(m, messages.last().unwrap()));
            assert_eq!(m.subject, "s");
        }
        assert_eq!(messages.len(), 1000usize.div_ceil(16));
        assert_eq!(decoded(&messages), all);
        let ids: std::collections::BTreeSet<_> = messages.iter().map(|m| &m.msg_id).collect();
        assert_eq!(
            ids.len(),
            messages.len(),
            "one deduplication ID per message"
        );
    }

    #[test]
    fn what_fits_stays_one_message_identical_to_the_plain_encoding() {
        let all = items(3);
        let messages = Outgoing::batch("s".into(), &all, 1 << 20).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].payload, serde_json::to_vec(&all).unwrap());
        assert!(Outgoing::batch::<String>("s".into(), &[], 100)
            .unwrap()
            .is_empty());
        // Exactly at the bound: `["item-0000"]` is 13 bytes.
        assert_eq!(Outgoing::batch("s".into(), &items(1), 13).unwrap().len(), 1);
    }

    #[test]
    fn an_item_too_large_alone_is_a_permanent_error() {
        let mut all = items(5);
        all.insert(2, "x".repeat(500));
        let e = Outgoing::batch("s".into(), &all, 100).unwrap_err();
        assert!(
            matches!(
                e,
                JetStreamError::TooLarge {
                    bytes: 504,
                    max: 100,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.is_transient(), "permanent, never retried");
        assert!(e.to_string().contains("NATS_MAX_MESSAGE_BYTES"), "{e}");
    }

    #[test]
    fn batches_split_per_subject() {
        let pairs = items(100)
            .into_iter()
            .enumerate()
            .map(|(i, item)| (if i % 2 == 0 { "a" } else { "b" }.to_owned(), item));
        let messages = Outgoing::batches(pairs, 64).unwrap();
        let a: Vec<_> = messages
            .iter()
            .filter(|m| m.subject == "a")
            .cloned()
            .collect();
        let b: Vec<_> = messages
            .iter()
            .filter(|m| m.subject == "b")
            .cloned()
            .collect();
        assert_eq!(
            decoded(&a),
            items(100).into_iter().step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(decoded(&b).len(), 50);
        assert!(messages.iter().all(|m| m.payload.len() <= 64));
    }
}
