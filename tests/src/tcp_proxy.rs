//! A TCP proxy on a loopback port in front of any server (PostgreSQL): bytes flow both ways until
//! [`TcpProxy::stall`], after which connections stay open but nothing more is passed on either
//! way — a network partition as a client sees it (no reset, no answer) — until
//! [`TcpProxy::resume`]. It counts the connections it carries and, for TLS, reads each
//! connection's `ServerHello` (sent in the clear) to tell full handshakes from resumed ones.
//! Runs on its own thread and runtime; stopped on drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The running proxy.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stalled: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// A proxy forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        listener
            .set_nonblocking(true)
            .expect("tokio needs a non-blocking listener");
        let (stalled, stall) = watch::channel(false);
        let (shutdown, mut stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let counting = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("testkit-tcp-proxy".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("building the TCP proxy runtime");
                runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(listener).expect("a loopback listener for tokio");
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => {
                                let Ok((client, _)) = accepted else { continue };
                                counting.connections.fetch_add(1, Ordering::Relaxed);
                                let counts = Arc::clone(&counting);
                                tokio::spawn(serve(client, upstream, stall.clone(), counts));
                            }
                        }
                    }
                });
                // Dropping the runtime drops every connection.
            })
            .expect("starting the TCP proxy thread");
        TcpProxy {
            addr,
            counts,
            stalled,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::Relaxed)
    }

    /// TLS handshakes seen so far: `(full, resumed)`. A handshake is resumed when the server's
    /// `ServerHello` accepts a pre-shared key (TLS 1.3's `pre_shared_key` extension).
    pub fn tls_handshakes(&self) -> (usize, usize) {
        (
            self.counts.full.load(Ordering::Relaxed),
            self.counts.resumed.load(Ordering::Relaxed),
        )
    }

    /// From now on pass nothing on, either way, on every connection (new ones included),
    /// keeping them open.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Pass bytes on again.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the proxy has carried.
#[derive(Debug, Default)]
struct Counts {
    connections: AtomicUsize,
    full: AtomicUsize,
    resumed: AtomicUsize,
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    stall: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pipe(client_read, server_write, stall.clone(), None) => {}
        () = pipe(server_read, client_write, stall, Some(counts)) => {}
    }
}

/// Copy `from` to `to`, holding each chunk back while stalled. With `hello`, the first record
/// is read as a TLS `ServerHello` and counted there.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stall: watch::Receiver<bool>,
    mut hello: Option<Arc<Counts>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut head = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(counts) = &hello {
            head.extend_from_slice(&buf[..n]);
            if let Some(resumed) = server_hello(&head) {
                let counter = if resumed {
                    &counts.resumed
                } else {
                    &counts.full
                };
                counter.fetch_add(1, Ordering::Relaxed);
                hello = None;
            } else if head.len() > 5 + (1 << 14) || head.first() != Some(&0x16) {
                // Not TLS, or not a hello: nothing to count on this connection.
                hello = None;
            }
        }
        if stall.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Whether the `ServerHello` starting `bytes` resumes a session (`Some(true)`: it carries the
/// `pre_shared_key` extension), or `None` while the record is incomplete or is no hello.
fn server_hello(bytes: &[u8]) -> Option<bool> {
    const HANDSHAKE: u8 = 0x16;
    const SERVER_HELLO: u8 = 2;
    const PRE_SHARED_KEY: u16 = 41;
    let len = usize::from(u16::from_be_bytes([*bytes.get(3)?, *bytes.get(4)?]));
    let record = bytes.get(5..5 + len)?;
    if bytes[0] != HANDSHAKE || *record.first()? != SERVER_HELLO {
        return None;
    }
    // type (1), length (3), version (2), random (32), then the session id.
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(*record.get(at)?);
    // cipher suite (2), compression (1), extensions' length (2).
    at += 2 + 1 + 2;
    let mut resumed = false;
    while let Some(ext) = record.get(at..at + 4) {
        let kind = u16::from_be_bytes([ext[0], ext[1]]);
        resumed |= kind == PRE_SHARED_KEY;
        at += 4 + usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    Some(resumed)
}
