//! The guard in the query's own message group: one request per guarded
//! read, and no request of its own for a transaction's opening query.
//!
//! Owns [`SpliceStream`], the byte stream between a pooled connection's
//! tokio-postgres driver and its socket, [`Splice`], the handle
//! [`Database::fetch`](crate::Database::fetch) and
//! [`Database::transaction`](crate::Database::transaction) arm it with, and
//! [`connect`], which builds such a connection.
//!
//! ## Why
//!
//! In PostgreSQL's extended query protocol, every message up to a `Sync` runs
//! in one implicit transaction. tokio-postgres (under diesel-async) ends every
//! statement with its own `Sync`, so `set_config('app.tenant_id', …, true)`
//! sent as a statement of its own is gone before the query runs; the guard
//! then costs a `BEGIN`/`COMMIT` pair and extra requests. Here the guard's
//! `Bind`+`Execute` (of a statement prepared once per connection) is written
//! into the byte stream right before the query's own `Bind`, so the server
//! sees `Bind(guard) Execute Bind(query) Execute Sync`: the tenant is set
//! transaction-locally, the query runs under it, and the `Sync` ends the
//! transaction and the setting with it. The driver never learns about the
//! guard: its three answers (`BindComplete`, `DataRow`, `CommandComplete`)
//! are taken out of the stream before the driver reads it; an `ErrorResponse`
//! to the guard is passed through, so the query fails with it (the server
//! skips the query up to the `Sync`).
//!
//! A tenant transaction's opening query (`BEGIN; EXECUTE
//! attestor_guard_actor(…)`, a simple `Query` message) is injected the same
//! way, in front of the next message of any type but `Terminate` (the
//! transaction's first statement, or its `COMMIT`/`ROLLBACK` when it ran
//! none): the server runs it first, then the
//! statement inside the transaction it opened, and the driver, which was
//! told the transaction is open, sees only the statement's answers. Its own
//! answers (`CommandComplete`, `RowDescription`, `DataRow`, up to its
//! `ReadyForQuery`) are taken out; an `ErrorResponse` is passed through, so
//! the first statement fails with it (the statement's own "current
//! transaction is aborted" follows in the same answer and is not read).
//!
//! Both directions are parsed only as far as message framing (type byte and
//! length); bodies pass through untouched.
//!
//! Must never: inject anything that was not armed, inject one arming
//! twice, hand the driver an answer that belongs to an injected message, or
//! keep going after the stream stops looking like the protocol (it fails the
//! connection instead, and the pool discards it).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use diesel::result::ConnectionError;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection as _};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

/// The guard statement that sets the tenant and the actor, and the one that
/// also sets `statement_timeout` (prepared by [`connect`]; a transaction's
/// opening query `EXECUTE`s one of them).
pub(crate) const GUARD_ACTOR: &str = "attestor_guard_actor";
pub(crate) const GUARD_TIMEOUT: &str = "attestor_guard_timeout";

/// Prepared once per connection by [`connect`]: the guard statements (the
/// tenant alone, the common case; with the actor, [`GUARD_ACTOR`]; with a
/// statement timeout, [`GUARD_TIMEOUT`]).
const PREPARE_GUARDS: &str = "\
PREPARE attestor_guard(text) AS
    SELECT set_config('app.tenant_id', $1, true);
PREPARE attestor_guard_actor(text, text) AS
    SELECT set_config('app.tenant_id', $1, true), set_config('app.actor', $2, true);
PREPARE attestor_guard_timeout(text, text, text) AS
    SELECT set_config('app.tenant_id', $1, true), set_config('app.actor', $2, true),
           set_config('statement_timeout', $3, true)";

/// Outgoing bytes buffered before `poll_write` waits for the socket.
const HIGH_WATER: usize = 256 * 1024;

/// What an arming injects, where it goes and where its answers end.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Injection {
    /// `fetch`'s guard (`Bind`+`Execute`): in front of the next `Bind`; its
    /// answers end with its `CommandComplete` (or its `ErrorResponse`).
    #[default]
    Guard,
    /// A transaction's opening simple query (`BEGIN; EXECUTE attestor_guard_actor(…)`):
    /// in front of the next message of any type but `Terminate` (a connection
    /// closed unused needs no transaction), so the transaction's first
    /// request carries it; its answers end with its `ReadyForQuery`.
    Begin,
}

/// What an incoming message is while an injected message awaits its answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// One of its answers: taken out of the stream.
    Dropped,
    /// Its last answer: taken out, and the stream is the driver's again.
    Last,
    /// Its error: passed to the driver, as the error of the driver's own
    /// statement. For the guard it is the last answer (the server skips to
    /// the `Sync`); for the opening query its `ReadyForQuery` follows (and
    /// then the statement's own "current transaction is aborted", which the
    /// driver does not read).
    Error { last: bool },
    /// A notice, notification or parameter status: the driver's, whenever it comes.
    Asynchronous,
}

impl Injection {
    /// What a message of type `kind` is to this injection; `None`: nothing
    /// it can be answered with (the stream has lost its framing).
    fn answer(self, kind: u8) -> Option<Answer> {
        use Injection::{Begin, Guard};
        match (self, kind) {
            (_, b'N' | b'A' | b'S') => Some(Answer::Asynchronous),
            // Guard: BindComplete, DataRow. Opening query: CommandComplete
            // (BEGIN, SELECT), RowDescription, DataRow, EmptyQueryResponse.
            (Guard, b'2' | b'D') | (Begin, b'C' | b'T' | b'D' | b'I') => Some(Answer::Dropped),
            // Guard: CommandComplete. Opening query: ReadyForQuery.
            (Guard, b'C') | (Begin, b'Z') => Some(Answer::Last),
            (Guard, b'E') => Some(Answer::Error { last: true }),
            (Begin, b'E') => Some(Answer::Error { last: false }),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Injection::Guard => "the guard's",
            Injection::Begin => "the opening query's",
        }
    }
}

#[derive(Default)]
struct State {
    /// The bytes to inject, and where (`kind`).
    armed: Option<BytesMut>,
    /// What the current (or last) arming injects.
    kind: Injection,
    /// The armed bytes went out.
    injected: bool,
    /// The stream stopped looking like the protocol.
    broken: bool,
    /// The injected guard answered with an error (passed on to the driver).
    guard_failed: bool,
}

/// The handle of one connection's [`SpliceStream`].
#[derive(Clone, Default)]
pub(crate) struct Splice(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// Armed and not yet disarmed: only then do the streams look at `state`
    /// (one atomic load per message otherwise).
    active: AtomicBool,
    /// Injected guards whose answers have not all been taken out yet.
    /// Changed only under the `state` lock; read without it, so that the
    /// statement's own answers (most of the traffic) never take the lock.
    awaiting: AtomicU32,
    state: Mutex<State>,
}

/// What happened to an arming, read by [`Splice::disarm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Disarmed {
    /// The armed bytes went out (the guard in front of a `Bind`, the opening
    /// query in front of the next message).
    pub injected: bool,
    /// Every injected message's answers were taken out and the framing held.
    pub in_sync: bool,
    /// The injected message itself failed (its error reached the driver as
    /// the statement's): the connection is not to be reused.
    pub guard_failed: bool,
}

impl Splice {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (plain field writes).
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> bool {
        self.0.active.load(Ordering::Acquire)
    }

    fn awaiting(&self) -> u32 {
        self.0.awaiting.load(Ordering::SeqCst)
    }

    /// Put `guard` in front of the next `Bind` written to the server.
    pub(crate) fn arm(&self, guard: BytesMut) {
        self.arm_with(Injection::Guard, guard);
    }

    /// Put `begin` (a simple-query message, see [`encode_query`]) in front of
    /// the next message written to the server, whatever its type (but
    /// `Terminate`).
    pub(crate) fn arm_begin(&self, begin: BytesMut) {
        self.arm_with(Injection::Begin, begin);
    }

    fn arm_with(&self, kind: Injection, bytes: BytesMut) {
        let mut s = self.state();
        s.armed = Some(bytes);
        s.kind = kind;
        s.injected = false;
        s.guard_failed = false;
        self.0.active.store(true, Ordering::Release);
    }

    /// Take the arming back (whether or not it was used) and say what happened.
    pub(crate) fn disarm(&self) -> Disarmed {
        let mut s = self.state();
        s.armed = None;
        let awaiting = self.awaiting();
        // Answers still due keep the reader looking (and `in_sync` false).
        self.0.active.store(awaiting > 0, Ordering::Release);
        Disarmed {
            injected: s.injected,
            in_sync: awaiting == 0 && !s.broken,
            guard_failed: s.guard_failed,
        }
    }
}

/// The guard's `Bind` (of a statement prepared by [`connect`]) and
/// `Execute`, parameters in text format. No `Sync`: the query's ends the
/// group. An empty actor is not sent: outside a transaction that sets it,
/// `app.actor` is empty anyway.
pub(crate) fn encode_guard(tenant: &str, actor: &str, statement_timeout: Option<Duration>) -> BytesMut {
    let timeout = statement_timeout.map(|t| t.as_millis().max(1).to_string());
    let (statement, values): (&str, Vec<&[u8]>) = match (&timeout, actor) {
        (Some(ms), _) => (
            GUARD_TIMEOUT,
            vec![tenant.as_bytes(), actor.as_bytes(), ms.as_bytes()],
        ),
        (None, "") => ("attestor_guard", vec![tenant.as_bytes()]),
        (None, _) => (GUARD_ACTOR, vec![tenant.as_bytes(), actor.as_bytes()]),
    };
    let mut buf = BytesMut::with_capacity(64 + tenant.len() + actor.len());
    frontend::bind(
        "",
        statement,
        [0i16],
        values,
        |v, buf| {
            buf.extend_from_slice(v);
            Ok(IsNull::No)
        },
        [0i16],
        &mut buf,
    )
    .unwrap_or_else(|_| unreachable!("encoding text parameters into memory cannot fail"));
    frontend::execute("", 0, &mut buf).expect("encoding into memory cannot fail");
    buf
}

/// A simple-query (`Query`) message carrying `sql`: a transaction's opening
/// statements, for [`Splice::arm_begin`].
pub(crate) fn encode_query(sql: &str) -> BytesMut {
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    frontend::query(sql, &mut buf).expect("encoding into memory cannot fail");
    buf
}

/// Message framing of one direction: where the current message ends.
struct Framing {
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current message still to come (0: at a header).
    remaining: usize,
    /// Length of the next header (4 for the untyped startup message).
    header_size: usize,
}

impl Framing {
    fn new(header_size: usize) -> Framing {
        Framing {
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            header_size,
        }
    }

    /// Consumes header bytes from `data`; returns the complete header, if any.
    fn header<'h>(&'h mut self, data: &mut &[u8]) -> io::Result<Option<&'h [u8]>> {
        let size = self.header_size;
        let take = (size - self.header_len).min(data.len());
        self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
        self.header_len += take;
        *data = &data[take..];
        if self.header_len < size {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.header[size - 4..size].try_into().expect("4 bytes")) as usize;
        if len < 4 {
            return Err(desync("a message length below 4"));
        }
        self.remaining = len - 4;
        self.header_len = 0;
        self.header_size = 5;
        Ok(Some(&self.header[..size]))
    }

    /// Consumes up to the rest of the current body from `data`.
    fn body<'d>(&mut self, data: &mut &'d [u8]) -> &'d [u8] {
        let take = self.remaining.min(data.len());
        let (body, rest) = data.split_at(take);
        self.remaining -= take;
        *data = rest;
        body
    }
}

fn desync(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("tenant guard splice: {what}; the connection is dropped"),
    )
}

/// A socket under tokio-postgres that injects the armed guard and takes its
/// answers out; see the module docs.
pub(crate) struct SpliceStream<S> {
    inner: S,
    splice: Splice,
    out: BytesMut,
    write: Framing,
    read: Framing,
    /// Whether the current incoming message goes to the driver.
    passing: bool,
}

impl<S> SpliceStream<S> {
    pub(crate) fn new(inner: S, splice: Splice) -> SpliceStream<S> {
        SpliceStream {
            inner,
            splice,
            out: BytesMut::with_capacity(8 * 1024),
            // The client's first message (StartupMessage) has no type byte.
            write: Framing::new(4),
            read: Framing::new(5),
            passing: true,
        }
    }

    /// Outgoing bytes: copied to `out`, the armed guard in front of a `Bind`.
    fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.write.remaining == 0 {
                let Some(header) = self.write.header(&mut data)? else {
                    break;
                };
                if header.len() == 5 && self.splice.active() {
                    let mut s = self.splice.state();
                    let here = match s.kind {
                        Injection::Guard => header[0] == b'B',
                        Injection::Begin => header[0] != b'X',
                    };
                    if let Some(bytes) = s.armed.take_if(|_| here) {
                        self.out.extend_from_slice(&bytes);
                        s.injected = true;
                        self.splice.0.awaiting.fetch_add(1, Ordering::SeqCst);
                    }
                }
                self.out.extend_from_slice(header);
            } else {
                let body = self.write.body(&mut data);
                self.out.extend_from_slice(body);
            }
        }
        Ok(())
    }

    /// Whether an incoming message of type `kind` goes to the driver.
    fn pass(&self, kind: u8) -> io::Result<bool> {
        if !self.splice.active() || self.splice.awaiting() == 0 {
            return Ok(true);
        }
        let mut s = self.splice.state();
        let injection = s.kind;
        Ok(match injection.answer(kind) {
            Some(Answer::Dropped) => false,
            Some(Answer::Last) => {
                self.splice.0.awaiting.fetch_sub(1, Ordering::SeqCst);
                false
            }
            // It failed: the statement fails with its error.
            Some(Answer::Error { last }) => {
                if last {
                    self.splice.0.awaiting.fetch_sub(1, Ordering::SeqCst);
                }
                s.guard_failed = true;
                true
            }
            Some(Answer::Asynchronous) => true,
            None => {
                s.broken = true;
                return Err(desync(&format!(
                    "unexpected message {:?} where {} answer belongs",
                    kind as char,
                    injection.name()
                )));
            }
        })
    }

    /// Incoming bytes, filtered in place: the injected guards' answers are
    /// cut out. Returns how many bytes remain at the front of `data`. The
    /// bytes that pass are moved once per run, not once per message (a page
    /// of rows behind a guard's answers is one move).
    fn filter(&mut self, data: &mut [u8]) -> io::Result<usize> {
        // `data[run..r]`: passing bytes not yet moved down to `w`.
        let (mut r, mut w, mut run) = (0, 0, 0);
        while r < data.len() {
            // The common case, most of the traffic (every row of a page): at
            // a message boundary, whole header in hand, no injected answer
            // due. The message is the driver's: step over it by its length.
            if self.read.remaining == 0
                && self.read.header_len == 0
                && data.len() - r >= 5
                && self.splice.awaiting() == 0
            {
                let len = u32::from_be_bytes(data[r + 1..r + 5].try_into().expect("4 bytes")) as usize;
                if len < 4 {
                    self.splice.state().broken = true;
                    return Err(desync("a message length below 4"));
                }
                let take = (1 + len).min(data.len() - r);
                self.read.remaining = 1 + len - take;
                self.passing = true;
                r += take;
                continue;
            }
            let chunk = r;
            let mut rest: &[u8] = &data[r..];
            if self.read.remaining == 0 {
                if self.read.header_len == 0 {
                    // The type byte decides; the rest of the message follows it.
                    self.passing = self.pass(rest[0])?;
                }
                if let Err(e) = self.read.header(&mut rest) {
                    self.splice.state().broken = true;
                    return Err(e);
                }
            } else {
                self.read.body(&mut rest);
            }
            r = data.len() - rest.len();
            if !self.passing {
                w = move_down(data, run..chunk, w);
                run = r;
            }
        }
        Ok(move_down(data, run..data.len(), w))
    }
}

/// Moves `data[range]` to `data[to..]`; returns where the moved bytes end.
fn move_down(data: &mut [u8], range: std::ops::Range<usize>, to: usize) -> usize {
    let len = range.len();
    if range.start != to && len > 0 {
        data.copy_within(range, to);
    }
    to + len
}

impl<S: AsyncWrite + Unpin> SpliceStream<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SpliceStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let after = buf.filled().len();
            if after == before {
                return Poll::Ready(Ok(())); // end of stream
            }
            let kept = this.filter(&mut buf.filled_mut()[before..after])?;
            buf.set_filled(before + kept);
            if kept > 0 {
                return Poll::Ready(Ok(()));
            }
            // Only guard answers arrived: read on.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SpliceStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.feed(buf)?;
        // Start writing now; whatever is left goes out in poll_flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A TCP or Unix-domain socket.
trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

async fn open_socket(config: &tokio_postgres::Config) -> io::Result<Box<dyn Socket>> {
    let ports = config.get_ports();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "the database URL names no host");
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let attempt = async {
            Ok::<Box<dyn Socket>, io::Error>(match host {
                Host::Tcp(name) => {
                    let s = TcpStream::connect((name.as_str(), port)).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
                Host::Unix(dir) => Box::new(UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?),
            })
        };
        let result = match config.get_connect_timeout() {
            Some(t) => tokio::time::timeout(*t, attempt)
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))),
            None => attempt.await,
        };
        match result {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens a connection whose socket is a [`SpliceStream`] and prepares the
/// guard statements on it. Plain TCP or Unix socket, no TLS (as
/// diesel-async's own `establish`).
pub(crate) async fn connect(url: &str) -> Result<(AsyncPgConnection, Splice), ConnectionError> {
    let bad = |e: &dyn std::fmt::Display| ConnectionError::BadConnection(e.to_string());
    let config: tokio_postgres::Config = url.parse().map_err(|e| bad(&e))?;
    let socket = open_socket(&config).await.map_err(|e| bad(&e))?;
    let splice = Splice::default();
    let (client, connection) = config
        .connect_raw(SpliceStream::new(socket, splice.clone()), NoTls)
        .await
        .map_err(|e| bad(&e))?;
    // Ends when the client is dropped (Terminate) or the socket fails; the
    // client's requests then fail, and the pool discards the connection.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    let mut conn = AsyncPgConnection::try_from(client).await?;
    conn.batch_execute(PREPARE_GUARDS)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok((conn, splice))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn stream() -> (SpliceStream<tokio::io::DuplexStream>, Splice) {
        let splice = Splice::default();
        let (a, _b) = tokio::io::duplex(64);
        (SpliceStream::new(a, splice.clone()), splice)
    }

    /// BindComplete, one DataRow, CommandComplete, ReadyForQuery.
    fn answers_to_the_query() -> Vec<u8> {
        [
            message(b'2', b""),
            message(b'D', b"\0\0"),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat()
    }

    /// A stream past its startup message that has sent one `Bind` with `guard` armed.
    fn sent_with(guard: BytesMut) -> (SpliceStream<tokio::io::DuplexStream>, Splice) {
        let (mut s, splice) = stream();
        s.feed(&[0, 0, 0, 8, 0, 3, 0, 0]).unwrap();
        splice.arm(guard);
        s.feed(&message(b'B', b"\0\0\0\0\0\0\0\0")).unwrap();
        (s, splice)
    }

    /// A stream past its startup message that has sent one `Parse` with an
    /// opening query armed.
    fn begun() -> (SpliceStream<tokio::io::DuplexStream>, Splice) {
        let (mut s, splice) = stream();
        s.feed(&[0, 0, 0, 8, 0, 3, 0, 0]).unwrap();
        splice.arm_begin(encode_query("BEGIN"));
        s.feed(&message(b'P', b"\0SELECT 2\0\0\0")).unwrap();
        (s, splice)
    }

    #[test]
    fn the_guard_goes_in_front_of_the_next_bind_once() {
        let (mut s, splice) = stream();
        let startup = [0, 0, 0, 8, 0, 3, 0, 0];
        s.feed(&startup).unwrap();
        splice.arm(encode_guard("t", "a", None));
        let parse = message(b'P', b"\0SELECT 1\0\0\0");
        let bind = message(b'B', b"\0\0\0\0\0\0\0\0");
        let exec = message(b'E', b"\0\0\0\0\0");
        let sync = message(b'S', b"");
        let all: Vec<u8> = [&parse[..], &bind, &exec, &sync, &bind, &exec, &sync].concat();
        // Fed one byte at a time: framing must not depend on write boundaries.
        for b in &all {
            s.feed(std::slice::from_ref(b)).unwrap();
        }
        let guard = encode_guard("t", "a", None);
        let expected: Vec<u8> = [
            &startup[..],
            &parse,
            &guard,
            &bind,
            &exec,
            &sync,
            &bind,
            &exec,
            &sync,
        ]
        .concat();
        assert_eq!(&s.out[..], &expected[..]);
        let d = splice.disarm();
        assert!(
            d.injected && !d.in_sync,
            "{d:?}: the guard's answers are still due"
        );
    }

    #[test]
    fn the_guards_answers_are_taken_out_and_its_error_passed_on() {
        let (mut s, splice) = sent_with(encode_guard("t", "a", Some(Duration::from_secs(1))));
        let notice = message(b'N', b"Mhello\0\0");
        let guard_answers = [
            message(b'2', b""),
            message(b'D', b"\0\x01\0\0\0\x01x"),
            notice.clone(),
            message(b'C', b"SELECT 1\0"),
        ]
        .concat();
        let query_answers = answers_to_the_query();
        let incoming = [guard_answers, query_answers.clone()].concat();
        // One byte at a time: framing must not depend on read boundaries.
        let mut passed = Vec::new();
        for b in &incoming {
            let mut one = [*b];
            let kept = s.filter(&mut one).unwrap();
            passed.extend_from_slice(&one[..kept]);
        }
        assert_eq!(passed, [notice, query_answers].concat());
        assert_eq!(
            splice.disarm(),
            Disarmed {
                injected: true,
                in_sync: true,
                guard_failed: false
            }
        );

        // A failing guard: its ErrorResponse reaches the driver as the query's.
        let (mut s, splice) = sent_with(encode_guard("t", "a", None));
        let answers = [message(b'E', b"SERROR\0\0"), message(b'Z', b"I")].concat();
        let mut data = answers.clone();
        let kept = s.filter(&mut data).unwrap();
        assert_eq!(&data[..kept], &answers[..]);
        assert_eq!(
            splice.disarm(),
            Disarmed {
                injected: true,
                in_sync: true,
                guard_failed: true
            }
        );
    }

    #[test]
    fn answers_in_one_read_are_compacted_in_place() {
        let (mut s, splice) = sent_with(encode_guard("t", "", None));
        let guard = [
            message(b'2', b""),
            message(b'D', b"\0\x01\0\0\0\x01x"),
            message(b'C', b"SELECT 1\0"),
        ]
        .concat();
        let query = answers_to_the_query();
        let mut data = [guard, query.clone()].concat();
        let kept = s.filter(&mut data).unwrap();
        assert_eq!(&data[..kept], &query[..]);
        let d = splice.disarm();
        assert!(d.injected && d.in_sync && !d.guard_failed, "{d:?}");
        // Disarmed: later answers pass untouched.
        let mut again = query.clone();
        assert_eq!(s.filter(&mut again).unwrap(), query.len());
    }

    #[test]
    fn every_read_boundary_leaves_the_same_bytes() {
        // A notice ahead of the guard's answers, one inside them, then a
        // page of rows: passing runs on both sides of the cut-out parts.
        let notice = message(b'N', b"Mhello\0\0");
        let rows: Vec<u8> = (0..50u8)
            .flat_map(|i| message(b'D', &[0, 1, 0, 0, 0, 1, i]))
            .collect();
        let query = [
            message(b'2', b""),
            rows,
            message(b'C', b"SELECT 50\0"),
            message(b'Z', b"I"),
        ]
        .concat();
        let incoming = [
            notice.clone(),
            message(b'2', b""),
            notice.clone(),
            message(b'D', b"\0\x01\0\0\0\x01x"),
            message(b'C', b"SELECT 1\0"),
            query.clone(),
        ]
        .concat();
        let expected = [notice.clone(), notice, query].concat();
        for cut in 0..=incoming.len() {
            let (mut s, splice) = sent_with(encode_guard("t", "", None));
            let mut passed = Vec::new();
            for part in [&incoming[..cut], &incoming[cut..]] {
                let mut data = part.to_vec();
                let kept = s.filter(&mut data).unwrap();
                passed.extend_from_slice(&data[..kept]);
            }
            assert_eq!(passed, expected, "read boundary at byte {cut}");
            let d = splice.disarm();
            assert!(d.injected && d.in_sync && !d.guard_failed, "cut {cut}: {d:?}");
        }
    }

    #[test]
    fn the_opening_query_goes_in_front_of_the_next_message_of_any_type_once() {
        let begin = encode_query("BEGIN; SELECT 1");
        let parse = message(b'P', b"\0SELECT 2\0\0\0");
        let sync = message(b'S', b"");
        let commit = message(b'Q', b"COMMIT\0");
        // Not in front of Terminate: a connection closed unused opens nothing.
        let (mut s, splice) = stream();
        s.feed(&[0, 0, 0, 8, 0, 3, 0, 0]).unwrap();
        splice.arm_begin(begin.clone());
        s.feed(&message(b'X', b"")).unwrap();
        assert_eq!(&s.out[8..], &message(b'X', b"")[..]);
        assert!(!splice.disarm().injected);
        for first in [&parse, &commit] {
            let (mut s, splice) = stream();
            let startup = [0, 0, 0, 8, 0, 3, 0, 0];
            s.feed(&startup).unwrap();
            splice.arm_begin(begin.clone());
            let all: Vec<u8> = [&first[..], &sync, &commit].concat();
            for b in &all {
                s.feed(std::slice::from_ref(b)).unwrap();
            }
            let expected: Vec<u8> = [&startup[..], &begin, first, &sync, &commit].concat();
            assert_eq!(&s.out[..], &expected[..]);
            let d = splice.disarm();
            assert!(d.injected && !d.in_sync, "{d:?}: its answers are still due");
        }
    }

    #[test]
    fn the_opening_querys_answers_are_taken_out_and_its_error_passed_on() {
        let begin_answers = [
            message(b'C', b"BEGIN\0"),
            message(
                b'T',
                b"\0\x01x\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
            ),
            message(b'D', b"\0\x01\0\0\0\x01t"),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"T"),
        ]
        .concat();
        let statement = [message(b'1', b""), message(b'Z', b"T")].concat();
        let incoming = [begin_answers, statement.clone()].concat();
        for cut in 0..=incoming.len() {
            let (mut s, splice) = begun();
            let mut passed = Vec::new();
            for part in [&incoming[..cut], &incoming[cut..]] {
                let mut data = part.to_vec();
                let kept = s.filter(&mut data).unwrap();
                passed.extend_from_slice(&data[..kept]);
            }
            assert_eq!(passed, statement, "read boundary at byte {cut}");
            let d = splice.disarm();
            assert!(d.injected && d.in_sync && !d.guard_failed, "cut {cut}: {d:?}");
        }

        // It failed: the driver gets its error; its ReadyForQuery is taken out.
        let (mut s, splice) = begun();
        let error = message(b'E', b"SERROR\0\0");
        let aborted = [message(b'E', b"SERROR\0C25P02\0\0"), message(b'Z', b"E")].concat();
        let mut data = [error.clone(), message(b'Z', b"E"), aborted.clone()].concat();
        let kept = s.filter(&mut data).unwrap();
        assert_eq!(&data[..kept], &[error, aborted].concat()[..]);
        assert_eq!(
            splice.disarm(),
            Disarmed {
                injected: true,
                in_sync: true,
                guard_failed: true
            }
        );
    }

    #[test]
    fn framing_holds_across_unguarded_traffic_at_every_read_boundary() {
        // Answers with no guard due take the fast path (stepped over by
        // their length), split anywhere; the next guard's answers must still
        // be found at the right place.
        let rows: Vec<u8> = (0..20u8)
            .flat_map(|i| message(b'D', &[0, 1, 0, 0, 0, 2, i, i]))
            .collect();
        let unguarded = [
            message(b'2', b""),
            rows,
            message(b'C', b"SELECT 20\0"),
            message(b'Z', b"I"),
        ]
        .concat();
        let guard = [
            message(b'2', b""),
            message(b'D', b"\0\x01\0\0\0\x01x"),
            message(b'C', b"SELECT 1\0"),
        ]
        .concat();
        let query = answers_to_the_query();
        for cut in 0..=unguarded.len() {
            let (mut s, splice) = stream();
            s.feed(&[0, 0, 0, 8, 0, 3, 0, 0]).unwrap();
            let mut passed = Vec::new();
            for part in [&unguarded[..cut], &unguarded[cut..]] {
                let mut data = part.to_vec();
                let kept = s.filter(&mut data).unwrap();
                passed.extend_from_slice(&data[..kept]);
            }
            assert_eq!(passed, unguarded, "read boundary at byte {cut}");
            splice.arm(encode_guard("t", "", None));
            s.feed(&message(b'B', b"\0\0\0\0\0\0\0\0")).unwrap();
            let mut data = [guard.clone(), query.clone()].concat();
            let kept = s.filter(&mut data).unwrap();
            assert_eq!(&data[..kept], &query[..], "cut {cut}");
            let d = splice.disarm();
            assert!(d.injected && d.in_sync && !d.guard_failed, "cut {cut}: {d:?}");
        }
        // A length below 4 in the fast path breaks the connection too.
        let (mut s, splice) = stream();
        let mut bad = [b'D', 0, 0, 0, 3, 0].to_vec();
        assert!(s.filter(&mut bad).is_err());
        assert!(!splice.disarm().in_sync);
    }

    #[test]
    fn anything_else_where_the_guards_answer_belongs_breaks_the_connection() {
        let (mut s, splice) = sent_with(encode_guard("t", "a", None));
        assert!(s.filter(&mut message(b'Z', b"I")).is_err());
        let d = splice.disarm();
        assert!(d.injected && !d.in_sync, "{d:?}");
    }

    #[test]
    fn nothing_is_injected_unless_armed() {
        let (mut s, splice) = stream();
        let bytes = [
            &[0u8, 0, 0, 8, 0, 3, 0, 0][..],
            &message(b'B', b"\0\0\0\0\0\0\0\0"),
        ]
        .concat();
        s.feed(&bytes).unwrap();
        assert_eq!(&s.out[..], &bytes[..]);
        let d = splice.disarm();
        assert!(!d.injected && d.in_sync && !d.guard_failed, "{d:?}");
    }
}
