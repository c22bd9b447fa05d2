//! A TCP proxy between the pool and the test server that disturbs what the
//! server sends, as the network and a busy server may: every message it
//! forwards may be split into small writes, delayed, or preceded by a
//! `NoticeResponse` or a `NotificationResponse` the client never asked for.
//! What the client sends passes unchanged. It never changes a message's
//! content, only where the reads end and what asynchronous messages come
//! in between.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attestor_testdb::ConnParams;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// A running proxy; dropping it stops accepting (open connections end
/// with their sockets).
pub struct Proxy {
    /// The URL of the proxied database (same role and database).
    pub url: String,
    /// Messages disturbed so far (splits, delays, injections).
    pub disturbed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic generator (xorshift64*), so a failing seed replays.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Starts a proxy in front of the server `url` points at; `seed` decides
/// every disturbance.
pub async fn start(url: &str, seed: u64) -> Proxy {
    let target = ConnParams::parse(url).expect("a test database URL");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut proxied = target.clone();
    proxied.host = "127.0.0.1".into();
    proxied.port = port;
    let stop = Arc::new(AtomicBool::new(false));
    let disturbed = Arc::new(AtomicU64::new(0));
    let (stop2, disturbed2) = (stop.clone(), disturbed.clone());
    tokio::spawn(async move {
        let mut rng = Rng::new(seed);
        while !stop2.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            client.set_nodelay(true).ok();
            let conn_seed = rng.next();
            let target = target.clone();
            let disturbed = disturbed2.clone();
            tokio::spawn(async move {
                if target.is_unix_socket() {
                    let path = format!("{}/.s.PGSQL.{}", target.host, target.port);
                    let Ok(server) = UnixStream::connect(path).await else {
                        return;
                    };
                    pipe(client, server, conn_seed, disturbed).await;
                } else {
                    let Ok(server) = TcpStream::connect((target.host.as_str(), target.port)).await else {
                        return;
                    };
                    pipe(client, server, conn_seed, disturbed).await;
                }
            });
        }
    });
    Proxy {
        url: proxied.url(),
        disturbed,
        stop,
    }
}

async fn pipe<S>(client: TcpStream, server: S, seed: u64, disturbed: Arc<AtomicU64>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let mut rng = Rng::new(seed);
    let mut header = [0u8; 5];
    // Before the first ReadyForQuery (authentication, startup) nothing is disturbed.
    let mut started = false;
    loop {
        if server_read.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
        let mut whole = header.to_vec();
        whole.resize(1 + len, 0);
        if server_read.read_exact(&mut whole[5..]).await.is_err() {
            break;
        }
        let mut out = Vec::new();
        let ready = started;
        started |= header[0] == b'Z';
        if ready && rng.one_in(12) {
            out.extend(message(b'N', b"SNOTICE\0VNOTICE\0C00000\0Mfrom the proxy\0\0"));
            disturbed.fetch_add(1, Ordering::Relaxed);
        }
        if ready && rng.one_in(16) {
            out.extend(message(b'A', b"\0\0\0\x2aattestor_proxy\0late\0"));
            disturbed.fetch_add(1, Ordering::Relaxed);
        }
        out.extend_from_slice(&whole);
        if ready && rng.one_in(6) {
            // Split into small writes with pauses: the client's reads end
            // inside headers and bodies.
            disturbed.fetch_add(1, Ordering::Relaxed);
            let mut at = 0;
            while at < out.len() {
                let n = (1 + rng.below(7) as usize).min(out.len() - at);
                if client_write.write_all(&out[at..at + n]).await.is_err() {
                    break;
                }
                at += n;
                if rng.one_in(3) {
                    tokio::time::sleep(Duration::from_micros(50 + rng.below(400))).await;
                }
            }
        } else {
            if ready && rng.one_in(20) {
                // A late answer.
                disturbed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200 + rng.below(2000))).await;
            }
            if client_write.write_all(&out).await.is_err() {
                break;
            }
        }
    }
    up.abort();
}
