//! A TCP proxy that a test can cut and restore, to take Redis or RabbitMQ away from one
//! process without touching the shared servers. While cut, it closes every open
//! connection and every new one at once. While stalled, it keeps every connection open
//! and forwards nothing: a server that hangs (or a network that drops packets). It can
//! also withhold the server's replies on the connections open now, while forwarding
//! what the client sends and serving new connections: a reply lost on its way back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    stalled: tokio::sync::watch::Sender<bool>,
    /// How many links were opened so far; each is numbered in order.
    opened: Arc<AtomicU64>,
    /// Links numbered below this get no more replies from the server.
    deaf_below: Arc<AtomicU64>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port for the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (stalled, _) = tokio::sync::watch::channel(false);
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let opened = Arc::new(AtomicU64::new(0));
        let deaf_below = Arc::new(AtomicU64::new(0));
        let target = target.to_owned();
        let acceptor = {
            let (cut, links, stalled) = (cut.clone(), links.clone(), stalled.clone());
            let (opened, deaf_below) = (opened.clone(), deaf_below.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropping the socket closes it
                    }
                    let target = target.clone();
                    let mut stall = stalled.subscribe();
                    let number = opened.fetch_add(1, Ordering::SeqCst);
                    let deaf_below = deaf_below.clone();
                    let link = tokio::spawn(async move {
                        if *stall.borrow() {
                            // Held open, never answered, until the link is aborted.
                            return std::future::pending::<()>().await;
                        }
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let (mut client_in, mut client_out) = client.split();
                            let (mut server_in, mut server_out) = server.split();
                            let requests = tokio::io::copy(&mut client_in, &mut server_out);
                            let replies = async {
                                let mut chunk = vec![0u8; 16 * 1024];
                                loop {
                                    let read = server_in.read(&mut chunk).await.unwrap_or(0);
                                    if read == 0 {
                                        return;
                                    }
                                    if deaf_below.load(Ordering::SeqCst) > number {
                                        // Withheld; the connection stays open.
                                        std::future::pending::<()>().await;
                                    }
                                    if client_out.write_all(&chunk[..read]).await.is_err() {
                                        return;
                                    }
                                }
                            };
                            tokio::select! {
                                _ = requests => {}
                                () = replies => {}
                                () = async { let _ = stall.wait_for(|stalled| *stalled).await; } => {
                                    // Both sockets stay open; nothing moves.
                                    std::future::pending::<()>().await;
                                }
                            }
                        }
                    });
                    links.lock().unwrap_or_else(|e| e.into_inner()).push(link);
                }
            })
        };
        Self {
            port,
            cut,
            stalled,
            opened,
            deaf_below,
            links,
            acceptor,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection through the proxy and refuses service until restored.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.close_links();
    }

    /// Closes every connection through the proxy.
    fn close_links(&self) {
        for link in self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }

    /// Keeps every connection open but forwards nothing, until restored.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// From now on, the connections open now forward what the client sends but none of
    /// the server's replies (a confirm lost on its way back); new connections work.
    pub fn withhold_replies_on_open_links(&self) {
        self.deaf_below
            .store(self.opened.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Ends a cut or a stall: stalled connections are closed, new ones are forwarded.
    pub fn restore(&self) {
        if self.stalled.send_replace(false) {
            self.close_links();
        }
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
