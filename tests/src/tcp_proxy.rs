//! A TCP proxy on a loopback port in front of any server (PostgreSQL): bytes flow both ways until
//! [`TcpProxy::stall`], after which connections stay open but nothing more is passed on either
//! way — a network partition as a client sees it (no reset, no answer) — until
//! [`TcpProxy::resume`]. Runs on its own thread and runtime; stopped on drop.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The running proxy.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
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
                                tokio::spawn(serve(client, upstream, stall.clone()));
                            }
                        }
                    }
                });
                // Dropping the runtime drops every connection.
            })
            .expect("starting the TCP proxy thread");
        TcpProxy {
            addr,
            stalled,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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

async fn serve(client: TcpStream, upstream: SocketAddr, stall: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pipe(client_read, server_write, stall.clone()) => {}
        () = pipe(server_read, client_write, stall) => {}
    }
}

/// Copy `from` to `to`, holding each chunk back while stalled.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stall: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stall.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
