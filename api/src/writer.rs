//! Group commit for new request records.
//!
//! Every checkout stores its record before publishing. One commit each
//! would make the api pay an fsync per request; instead concurrent checkouts
//! hand their record to a writer task, which inserts whatever has queued up
//! in one transaction and answers each caller after the commit. Durability is
//! unchanged (each caller still waits for its committed row); under load
//! many requests share one commit, and an idle system writes batches of one
//! with no added delay.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::records::{self, NewRecord, RequestRecord};

/// Most records per transaction.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(String);

type Reply = oneshot::Sender<Result<RequestRecord, WriteError>>;

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<(NewRecord, Reply)>,
}

impl Writer {
    /// Starts `tasks` writers: while one commits, the next collects.
    pub fn start(pool: Pool, republish_after: Duration, tasks: usize) -> Self {
        let (queue, rx) = mpsc::channel(8192);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..tasks.max(1) {
            tokio::spawn(write_loop(pool.clone(), rx.clone(), republish_after));
        }
        Self { queue }
    }

    pub async fn create(&self, new: NewRecord) -> Result<RequestRecord, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((new, tx))
            .await
            .map_err(|_| WriteError("record writer stopped".into()))?;
        rx.await
            .map_err(|_| WriteError("record writer stopped".into()))?
    }
}

async fn write_loop(
    pool: Pool,
    rx: Arc<Mutex<mpsc::Receiver<(NewRecord, Reply)>>>,
    republish_after: Duration,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let (new, replies): (Vec<NewRecord>, Vec<Reply>) = batch.into_iter().unzip();
        match records::create_many(&pool, &new, republish_after).await {
            Ok(created) if created.len() == replies.len() => {
                for (record, reply) in created.into_iter().zip(replies) {
                    let _ = reply.send(Ok(record));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(WriteError("inserted rows went missing".into())));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = replies.len(), "cannot store request records");
                let e = WriteError(e.to_string());
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
