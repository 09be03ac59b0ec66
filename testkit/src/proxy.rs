//! A TCP proxy that can cut a binary off from its PostgreSQL or nats-server
//! without touching the shared servers (other tests run on them): the real
//! server stays up, and only the connections through the proxy break.
//!
//! `cut()` drops every open connection and refuses new ones (accepted and
//! closed at once, as a server that is down would); `restore()` lets
//! connections through again.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Cancelled to drop the connections of the current epoch.
    epoch: Arc<Mutex<CancellationToken>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let down = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(Mutex::new(CancellationToken::new()));
        let task = tokio::spawn({
            let (down, epoch) = (down.clone(), epoch.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let token = epoch.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    tokio::spawn(forward(client, target, token));
                }
            }
        });
        Self {
            addr,
            down,
            epoch,
            task,
        }
    }

    /// Breaks every connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        epoch.cancel();
        *epoch = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.epoch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, cut: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}

/// `host:port` of a `postgres://` or `nats://` URL.
pub fn socket_of(url: &str) -> SocketAddr {
    host_port(url)
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap_or_else(|e| panic!("not host:port in {url}: {e}"))
}

fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    rest.split(['/', '?', ',']).next().unwrap_or(rest)
}

/// `url` with its `host:port` replaced by `addr`.
pub fn through(url: &str, addr: SocketAddr) -> String {
    url.replacen(host_port(url), &addr.to_string(), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            socket_of("postgres://postgres@127.0.0.1:15432/t1_api"),
            "127.0.0.1:15432".parse().unwrap()
        );
        assert_eq!(
            through("postgres://postgres@127.0.0.1:15432/t1_api", a),
            "postgres://postgres@127.0.0.1:9/t1_api"
        );
        assert_eq!(through("nats://127.0.0.1:14222", a), "nats://127.0.0.1:9");
    }
}
