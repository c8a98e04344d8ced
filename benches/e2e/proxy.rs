//! A TCP proxy that shapes loopback traffic like a slow wide-area link.
//!
//! There is no `tc netem` on the benchmark machine, so the "external registry" is reached through
//! this proxy: every byte is delayed by a fixed one-way latency, and each direction shares one
//! bandwidth cap across all connections (a link, not a per-connection limit, so opening more
//! connections does not buy more bandwidth). A new connection also pays one round trip before its
//! first byte moves, as a TCP handshake would.
//!
//! With [`LinkShape::DIRECT`] (no delay, no cap) it only observes: it sits in front of every
//! registry so each run's connections and TLS handshakes (full or resumed, read from the
//! cleartext hellos) are counted per side.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::tls::{Handshake, classify, looks_like_tls};

/// How a link behaves.
#[derive(Debug, Clone, Copy)]
pub struct LinkShape {
    /// Added to every byte in each direction (the round-trip time is twice this).
    pub one_way_delay: Duration,
    /// Capacity of each direction, in bytes per second.
    pub bytes_per_sec: u64,
}

impl LinkShape {
    /// The slow link: 25 ms each way, 400 Mbit/s per direction.
    pub const SLOW: LinkShape = LinkShape {
        one_way_delay: Duration::from_millis(25),
        bytes_per_sec: 400_000_000 / 8,
    };

    /// Loopback as it is: the proxy only counts.
    pub const DIRECT: LinkShape = LinkShape {
        one_way_delay: Duration::ZERO,
        bytes_per_sec: 0,
    };

    fn is_direct(&self) -> bool {
        self.bytes_per_sec == 0
    }

    /// The least time moving `bytes` in one direction can take on this link.
    pub fn floor(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64)
    }
}

/// Bytes and connections that went through a proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client to upstream.
    pub up_bytes: AtomicU64,
    /// Upstream to client.
    pub down_bytes: AtomicU64,
    /// Accepted client connections.
    pub connections: AtomicU64,
    /// TLS handshakes that sent a certificate.
    pub full_handshakes: AtomicU64,
    /// TLS handshakes that resumed an earlier session.
    pub resumed_handshakes: AtomicU64,
}

/// A snapshot of [`Counters`], subtractable to get one run's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub connections: u64,
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            up_bytes: self.up_bytes - earlier.up_bytes,
            down_bytes: self.down_bytes - earlier.down_bytes,
            connections: self.connections - earlier.connections,
            full_handshakes: self.full_handshakes - earlier.full_handshakes,
            resumed_handshakes: self.resumed_handshakes - earlier.resumed_handshakes,
        }
    }
}

/// The first bytes of each direction of one connection, kept until its TLS handshake is
/// classified (or it turns out not to be TLS).
#[derive(Debug, Default)]
struct Sniff {
    client: Vec<u8>,
    server: Vec<u8>,
    done: bool,
}

/// Hellos fit in a few KiB; a connection that has sent more without one is not looked at.
const SNIFF_LIMIT: usize = 16 * 1024;

impl Sniff {
    /// Adds bytes one side sent; returns the handshake once it can be told.
    fn add(&mut self, from_client: bool, bytes: &[u8]) -> Option<Handshake> {
        if self.done {
            return None;
        }
        let buffer = if from_client {
            &mut self.client
        } else {
            &mut self.server
        };
        buffer.extend_from_slice(&bytes[..bytes.len().min(SNIFF_LIMIT - buffer.len())]);
        if !self.client.is_empty() && !looks_like_tls(&self.client) {
            self.done = true;
            return None;
        }
        let handshake = classify(&self.client, &self.server);
        if handshake.is_some()
            || self.client.len() >= SNIFF_LIMIT
            || self.server.len() >= SNIFF_LIMIT
        {
            self.done = true;
            self.client = Vec::new();
            self.server = Vec::new();
        }
        handshake
    }
}

/// One direction's bandwidth: a virtual clock of when the wire is next free, with a small
/// bucket so that timer granularity (tokio sleeps in whole milliseconds) does not lose capacity.
#[derive(Debug)]
struct Pacer {
    next_free: Mutex<Instant>,
    bytes_per_sec: f64,
    burst: Duration,
}

impl Pacer {
    fn new(bytes_per_sec: u64) -> Self {
        Pacer {
            next_free: Mutex::new(Instant::now()),
            bytes_per_sec: bytes_per_sec as f64,
            // About 2 ms of capacity: one timer tick of oversleep is made up, no more.
            burst: Duration::from_millis(2),
        }
    }

    /// Books the wire for `n` bytes; returns when they start and when they have been sent.
    fn reserve(&self, n: usize) -> (Instant, Instant) {
        let now = Instant::now();
        let mut next_free = self.next_free.lock().expect("pacer lock is never poisoned");
        let start = (*next_free).max(now.checked_sub(self.burst).unwrap_or(now));
        let done = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        *next_free = done;
        (start, done)
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct ShapingProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    accept_loop: JoinHandle<()>,
}

impl Drop for ShapingProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl ShapingProxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr, shape: LinkShape) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let link = Arc::new(Link {
            shape,
            up: Pacer::new(shape.bytes_per_sec),
            down: Pacer::new(shape.bytes_per_sec),
            counters: counters.clone(),
        });
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                link.counters.connections.fetch_add(1, Ordering::Relaxed);
                let link = link.clone();
                tokio::spawn(async move {
                    // A broken connection is the client's or registry's business, not the proxy's.
                    let _ = link.serve(client, upstream).await;
                });
            }
        });
        Ok(ShapingProxy {
            addr,
            counters,
            accept_loop,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            up_bytes: self.counters.up_bytes.load(Ordering::Relaxed),
            down_bytes: self.counters.down_bytes.load(Ordering::Relaxed),
            connections: self.counters.connections.load(Ordering::Relaxed),
            full_handshakes: self.counters.full_handshakes.load(Ordering::Relaxed),
            resumed_handshakes: self.counters.resumed_handshakes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Link {
    shape: LinkShape,
    up: Pacer,
    down: Pacer,
    counters: Arc<Counters>,
}

/// Chunks are small enough that pacing is smooth (64 KiB is 1.3 ms at 400 Mbit/s).
const CHUNK: usize = 64 * 1024;
/// Chunks in flight per direction: well above the bandwidth-delay product (50 MB/s × 25 ms).
const IN_FLIGHT: usize = 128;

impl Link {
    async fn serve(&self, client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
        // The handshake's round trip: a real client's first byte cannot arrive sooner.
        sleep(self.shape.one_way_delay * 2).await;
        let server = TcpStream::connect(upstream).await?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let sniff = Mutex::new(Sniff::default());
        let up = self.pump(client_read, server_write, true, &sniff);
        let down = self.pump(server_read, client_write, false, &sniff);
        tokio::try_join!(up, down)?;
        Ok(())
    }

    /// Counts bytes one side sent and looks at them for the TLS handshake.
    fn observe(&self, from_client: bool, bytes: &[u8], sniff: &Mutex<Sniff>) {
        let counter = if from_client {
            &self.counters.up_bytes
        } else {
            &self.counters.down_bytes
        };
        counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let handshake = sniff
            .lock()
            .expect("sniff lock is never poisoned")
            .add(from_client, bytes);
        match handshake {
            Some(Handshake::Full) => &self.counters.full_handshakes,
            Some(Handshake::Resumed) => &self.counters.resumed_handshakes,
            None => return,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Moves one direction: read, wait for the wire, deliver after the delay, in order.
    async fn pump(
        &self,
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
        from_client: bool,
        sniff: &Mutex<Sniff>,
    ) -> std::io::Result<()> {
        if self.shape.is_direct() {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = from.read(&mut buf).await?;
                if n == 0 {
                    return to.shutdown().await;
                }
                self.observe(from_client, &buf[..n], sniff);
                to.write_all(&buf[..n]).await?;
            }
        }
        let pacer = if from_client { &self.up } else { &self.down };
        let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
        let delay = self.shape.one_way_delay;
        let read_side = async move {
            loop {
                // Take a slot first so a stalled receiver stops reading instead of booking wire time.
                let Ok(slot) = tx.reserve().await else {
                    return Ok::<(), std::io::Error>(());
                };
                let mut buf = vec![0u8; CHUNK];
                let n = from.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                let (start, sent) = pacer.reserve(n);
                sleep_until(start).await;
                self.observe(from_client, &buf, sniff);
                slot.send((sent + delay, buf));
            }
        };
        let write_side = async move {
            while let Some((deliver_at, buf)) = rx.recv().await {
                sleep_until(deliver_at).await;
                to.write_all(&buf).await?;
            }
            // The sender finished (end of stream): pass the half-close on.
            to.shutdown().await
        };
        tokio::try_join!(read_side, write_side)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes upper-cased through a proxy of `shape`; returns the proxy's counts.
    async fn echo_through(shape: LinkShape, payload: &[u8]) -> Traffic {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        // An echo server that upper-cases, so the test sees both directions.
        tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut received = Vec::new();
            conn.read_to_end(&mut received).await.unwrap();
            conn.write_all(&received.to_ascii_uppercase())
                .await
                .unwrap();
            conn.shutdown().await.unwrap();
        });
        let proxy = ShapingProxy::start(upstream_addr, shape).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        conn.write_all(payload).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        conn.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, payload.to_ascii_uppercase());
        proxy.traffic()
    }

    #[tokio::test]
    async fn bytes_pass_through_unchanged_and_are_counted() {
        let payload: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let shaped = LinkShape {
            one_way_delay: Duration::from_millis(1),
            bytes_per_sec: 100_000_000,
        };
        for shape in [shaped, LinkShape::DIRECT] {
            let traffic = echo_through(shape, &payload).await;
            assert_eq!(traffic.up_bytes, payload.len() as u64);
            assert_eq!(traffic.down_bytes, payload.len() as u64);
            assert_eq!(traffic.connections, 1);
            assert_eq!(traffic.full_handshakes + traffic.resumed_handshakes, 0);
        }
    }

    #[test]
    fn a_tls_handshake_is_told_from_the_hellos_in_either_order() {
        // A minimal TLS 1.3 ClientHello / ServerHello pair, resumed (pre_shared_key accepted).
        let record = |kind: u8, extensions: &[u8]| {
            let mut body = vec![3, 3];
            body.extend([0u8; 32]);
            body.push(0);
            body.extend([0x13, 0x01, 0]);
            body.extend((extensions.len() as u16).to_be_bytes());
            body.extend(extensions);
            let mut message = vec![kind, 0];
            message.extend((body.len() as u16).to_be_bytes());
            message.extend(body);
            let mut record = vec![22, 3, 3];
            record.extend((message.len() as u16).to_be_bytes());
            record.extend(message);
            record
        };
        let client = record(1, &[]);
        let server = record(2, &[0, 43, 0, 2, 3, 4, 0, 41, 0, 2, 0, 0]);
        let mut sniff = Sniff::default();
        assert_eq!(sniff.add(true, &client[..10]), None);
        assert_eq!(sniff.add(false, &server), None);
        assert_eq!(sniff.add(true, &client[10..]), Some(Handshake::Resumed));
        // Counted once per connection.
        assert_eq!(sniff.add(false, b"more"), None);
        let mut plain = Sniff::default();
        assert_eq!(plain.add(true, b"GET /v2/ HTTP/1.1\r\n"), None);
        assert!(plain.done);
    }

    #[test]
    fn the_pacer_books_the_wire_back_to_back() {
        let pacer = Pacer::new(1_000_000);
        let (_, first_done) = pacer.reserve(1_000);
        let (second_start, second_done) = pacer.reserve(1_000);
        assert_eq!(second_start, first_done);
        assert_eq!(second_done - second_start, Duration::from_millis(1));
    }

    #[test]
    fn the_floor_is_bytes_over_bandwidth() {
        assert_eq!(LinkShape::SLOW.floor(50_000_000), Duration::from_secs(1));
    }
}
