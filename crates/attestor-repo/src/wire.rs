//! The guard in the statement's own message group: one request per guarded
//! read, no request of its own for a transaction's opening, and the answers
//! the guard depends on (transaction status, `COMMIT`'s tag) read off the
//! stream.
//!
//! Owns [`SpliceStream`], the byte stream between a pooled connection's
//! tokio-postgres driver and its socket, [`Splice`], the handle
//! [`Database::fetch`](crate::Database::fetch) and
//! [`Database::transaction`](crate::Database::transaction) arm it with, and
//! [`connect`], which builds such a connection. This is the one place the
//! guard's wire mechanism is documented; README and ARCHITECTURE.md link here.
//!
//! ## Why
//!
//! In PostgreSQL's extended query protocol, every message up to a `Sync` runs
//! in one implicit transaction, and after an error the server skips every
//! message up to the `Sync`. tokio-postgres (under diesel-async) ends every
//! statement with its own `Sync`, so `set_config('app.tenant_id', …, true)`
//! sent as a statement of its own is gone before the query runs. Here the
//! guard is written into the byte stream inside the statement's own group.
//!
//! ## What is injected, where
//!
//! - **`fetch`'s guard** (`Bind`+`Execute` of `attestor_guard`, prepared once
//!   per connection by [`connect`]) goes right before the next `Bind`: the
//!   server sees `Bind(guard) Execute Bind(query) Execute Sync`, the tenant
//!   is set transaction-locally, the query runs under it, the `Sync` ends
//!   both. The group's `ReadyForQuery` must report the connection idle
//!   (`I`): a statement that opened a transaction (`BEGIN`) fails the fetch,
//!   and the connection is discarded.
//! - **A transaction's opening** (`Parse`/`Bind`/`Execute` of `BEGIN`, then
//!   `Bind`/`Execute` of `attestor_guard_actor` or `attestor_guard_timeout`)
//!   goes in front of the transaction's first message, whatever its type
//!   (but `Terminate`), inside that message's group: `BEGIN` turns the
//!   group's implicit transaction into the transaction block, and if the
//!   opening fails the server skips the rest of the group, so the first
//!   statement never runs without it. A first message outside the extended
//!   protocol (a simple `Query`, e.g. `batch_execute` or a savepoint) gets
//!   the opening as a group of its own, with its own `Sync`. Either way
//!   nothing written after the carrying group's `Sync` leaves the process
//!   until that group's `ReadyForQuery` arrives: it must report a
//!   transaction block (`T`, or `E` when a statement in it failed); `I`
//!   means `BEGIN` never took effect (e.g. a cancel landed first), and the
//!   connection fails without sending the held bytes, so no statement of the
//!   transaction ever runs in autocommit. This costs a round trip only when
//!   the driver pipelines a second group before the first one's answer.
//!   Under `TenantContextMode::SetLocal` the opening is `BEGIN` and one
//!   `Parse`/`Bind`/`Execute` per `SET LOCAL` (tenant, actor, statement
//!   timeout; the values inlined as quoted literals, since a utility
//!   statement takes no parameters), in the same place and with the same
//!   holding: `SET LOCAL` inside `BEGIN` is what Citus forwards to the
//!   shards. No `set_config` guard is even prepared on such a connection.
//! - **A transaction's `COMMIT`**: in front of it, with a `Sync` of its own,
//!   `Bind`/`Execute` of `attestor_guard_check` with the tenant and actor the
//!   guard set (both modes). It reads the settings and, when either differs,
//!   fails (22P02), which aborts the transaction, so the `COMMIT` right
//!   behind it (not held: no extra round trip) rolls back. Then the `COMMIT`
//!   is watched: its first `CommandComplete`'s tag (`ROLLBACK` means
//!   PostgreSQL rolled the transaction back) and its `ReadyForQuery` status
//!   are recorded, and the check's SQLSTATE says whether the context had
//!   changed (22P02), the transaction was already aborted (25P02), or the
//!   check could not run at all. So one transaction never commits under two
//!   mechanisms' values (on Citus, a `set_config` on a `SET LOCAL`
//!   connection changes the coordinator only, and the two would disagree
//!   about the tenant). A change undone before the `COMMIT` is not seen.
//!
//! The injected messages' answers (`ParseComplete`, `BindComplete`,
//! `DataRow`, `CommandComplete`, and the `ReadyForQuery` of an opening with
//! its own `Sync`) are taken out of the stream before the driver reads it;
//! an `ErrorResponse` to them is recorded and, inside the driver's group,
//! passed on as the error of the driver's own statement (which the server
//! skipped).
//!
//! ## Attributing answers
//!
//! Answers are matched to requests by counting: every `Sync`, `Query` and
//! `FunctionCall` written (and the startup message) is owed exactly one
//! `ReadyForQuery`, and an injection records how many are still owed to
//! earlier requests when it goes out. Those answers (a dropped statement's
//! `Close`, a prepare or a checkout's `SELECT 1` whose caller stopped
//! reading early) pass first, however the server splits them; notices,
//! notifications and parameter statuses pass whenever they come. The
//! injected answers must then arrive in exactly the expected order; any
//! other message there fails the connection. A `ReadyForQuery` nobody is
//! owed fails it too.
//!
//! ## Fails closed, by design
//!
//! The guard rides only on the first `Bind` after arming. If the driver
//! sends another `Bind` before the fetch ends (it looks up a type it does
//! not know yet, e.g. an enum or composite result column, and the guard
//! travelled with that lookup; or the statement was sent twice), the report
//! says so and `fetch` withholds the result (the statement ran with no
//! tenant, so tenant tables gave it nothing). An injection never waits for
//! a previous one: while an injected or watched request's answers are still
//! due, the next arming is not used, and the caller fails closed.
//!
//! Both directions are parsed only as far as message framing (type byte and
//! length), plus the first bytes of `ReadyForQuery` and of a watched
//! `CommandComplete`; bodies pass through untouched.
//!
//! Must never: inject anything that was not armed, inject one arming
//! twice, hand the driver an answer that belongs to an injected message,
//! send a transaction's statement before its opening is known to have
//! opened the transaction, or keep going after the stream stops looking
//! like the protocol (it fails the connection instead; [`Splice::is_broken`]
//! tells the pool to discard it).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
use tokio::sync::Notify;
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

use crate::config::TenantContextMode;

/// The guard statements: the tenant alone (`fetch` without an actor), with
/// the actor, and with a statement timeout too (prepared by [`connect`]).
const GUARD: &str = "attestor_guard";
const GUARD_ACTOR: &str = "attestor_guard_actor";
const GUARD_TIMEOUT: &str = "attestor_guard_timeout";
/// The check in front of a transaction's `COMMIT` (prepared by [`connect`]).
const GUARD_CHECK: &str = "attestor_guard_check";

/// Prepared once per connection by [`connect`] under
/// [`TenantContextMode::SetConfig`].
const PREPARE_GUARDS: &str = "\
PREPARE attestor_guard(text) AS
    SELECT set_config('app.tenant_id', $1, true);
PREPARE attestor_guard_actor(text, text) AS
    SELECT set_config('app.tenant_id', $1, true), set_config('app.actor', $2, true);
PREPARE attestor_guard_timeout(text, text, text) AS
    SELECT set_config('app.tenant_id', $1, true), set_config('app.actor', $2, true),
           set_config('statement_timeout', $3, true)";

/// Prepared once per connection by [`connect`], in either mode: true when
/// the tenant context is what the guard set (`$1`, `$2`), an error
/// otherwise (the cast of the message fails with 22P02; reading the
/// settings keeps it from being folded when the statement is planned), which
/// aborts the transaction, so the `COMMIT` behind it rolls back.
const PREPARE_CHECK: &str = "\
PREPARE attestor_guard_check(text, text) AS
    SELECT CASE
        WHEN current_setting('app.tenant_id', true) IS NOT DISTINCT FROM $1
         AND current_setting('app.actor', true) IS NOT DISTINCT FROM $2
        THEN true
        ELSE ('the tenant context changed inside the transaction: app.tenant_id is '
              || coalesce(current_setting('app.tenant_id', true), 'unset'))::uuid IS NULL
    END";

/// Outgoing bytes buffered before `poll_write` waits for the socket.
const HIGH_WATER: usize = 256 * 1024;

/// The answers of `fetch`'s guard: BindComplete, DataRow, CommandComplete.
const GUARD_ANSWERS: &[u8] = b"2DC";
/// The answers of an opening: `BEGIN`'s ParseComplete, BindComplete and
/// CommandComplete, then the guard's three.
const BEGIN_ANSWERS: &[u8] = b"12C2DC";
/// The same, for an opening with its own `Sync`.
const BEGIN_SYNC_ANSWERS: &[u8] = b"12C2DCZ";
/// An opening under `SET LOCAL`: `BEGIN` and two or three `SET LOCAL`s,
/// each ParseComplete, BindComplete, CommandComplete (and the `Sync`'s
/// ReadyForQuery when the opening has its own).
const SET_LOCAL_ANSWERS: [&[u8]; 2] = [b"12C12C12C", b"12C12C12C12C"];
const SET_LOCAL_SYNC_ANSWERS: [&[u8]; 2] = [b"12C12C12CZ", b"12C12C12C12CZ"];
/// The check in front of a `COMMIT`, with its own `Sync`.
const CHECK_ANSWERS: &[u8] = b"2DCZ";

/// The answers an opening expects, inside the carrying group or with its own `Sync`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answers {
    in_group: &'static [u8],
    own_sync: &'static [u8],
}

/// Frontend message types of the extended query protocol (a group ends at `S`).
const EXTENDED: &[u8] = b"PBDECHS";

/// What an arming does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `fetch`'s guard, in front of the next `Bind`.
    Guard,
    /// A transaction's opening, in front of the next message but `Terminate`.
    Begin,
    /// Nothing injected: the next `Query` is watched.
    Watch,
    /// The context check, with its own `Sync`, in front of the next `Query`
    /// (the `COMMIT`), which is then watched.
    Commit,
}

/// What happened to an arming, read by [`Splice::disarm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Report {
    /// The armed bytes went out (for a watch: the watched `Query` did).
    pub injected: bool,
    /// A commit's check went out and failed: the tenant context was not what
    /// the guard set.
    pub check_failed: bool,
    /// A commit's check failed with another SQLSTATE than an already
    /// aborted transaction's (25P02) or a changed context's: e.g. the check
    /// statement is gone, and the connection could never commit again.
    pub check_broken: bool,
    /// Every answer of the injected (or watched) request arrived up to the
    /// `ReadyForQuery` of its group, and the framing held.
    pub in_sync: bool,
    /// The injected message answered with an error.
    pub failed: bool,
    /// The transaction status in the `ReadyForQuery` that ended the group
    /// carrying the injection (or the watched request): `I`, `T` or `E`.
    pub status: Option<u8>,
    /// The watched request's first `CommandComplete` tag was `ROLLBACK`.
    pub rolled_back: bool,
    /// Another `Bind` went out after the guard's, before the arming ended.
    pub extra_bind: bool,
}

#[derive(Default)]
struct State {
    /// The arming not yet used: what, the bytes to inject and the answers
    /// an opening expects.
    armed: Option<(Kind, BytesMut, Option<Answers>)>,
    /// The current arming, used or not, until [`Splice::disarm`].
    live: Option<Kind>,
    report: Report,
    /// The injected (or watched) request's answers are still due.
    pending: bool,
}

/// The handle of one connection's [`SpliceStream`].
#[derive(Clone, Default)]
pub(crate) struct Splice(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// Armed and not yet disarmed: only then does the writer look at
    /// `state` (one atomic load per message otherwise).
    active: AtomicBool,
    /// The stream stopped looking like the protocol, or closed (read on
    /// every write, without the lock).
    broken: AtomicBool,
    state: Mutex<State>,
    /// Woken when a pending request's answers are complete or the stream breaks.
    settled: Notify,
}

impl Splice {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (plain field writes).
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> bool {
        self.0.active.load(Ordering::Acquire)
    }

    /// Put `guard` (see [`encode_guard`]) in front of the next `Bind` written.
    pub(crate) fn arm(&self, guard: BytesMut) {
        self.arm_with(Kind::Guard, guard, None);
    }

    /// Put `begin` (see [`encode_begin`]) in front of the next message
    /// written, whatever its type (but `Terminate`).
    pub(crate) fn arm_begin(&self, (begin, answers): (BytesMut, Answers)) {
        self.arm_with(Kind::Begin, begin, Some(answers));
    }

    /// Watch the next `Query` written (the `COMMIT`): its tag and status.
    #[cfg(test)]
    pub(crate) fn arm_watch(&self) {
        self.arm_with(Kind::Watch, BytesMut::new(), None);
    }

    /// Put `check` (see [`encode_check`]) in front of the next `Query`
    /// written (the `COMMIT`), then watch that `Query`: its tag and status.
    pub(crate) fn arm_commit(&self, check: BytesMut) {
        self.arm_with(Kind::Commit, check, None);
    }

    fn arm_with(&self, kind: Kind, bytes: BytesMut, answers: Option<Answers>) {
        let mut s = self.state();
        s.armed = Some((kind, bytes, answers));
        s.live = Some(kind);
        s.report = Report::default();
        self.0.active.store(true, Ordering::Release);
    }

    /// Waits until the injected (or watched) request's group has been
    /// answered up to its `ReadyForQuery`, or the stream broke; returns at
    /// once if nothing is pending.
    pub(crate) async fn settle(&self) {
        loop {
            let notified = self.0.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.state();
                if !s.pending || self.is_broken() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Take the arming back (whether or not it was used) and say what happened.
    pub(crate) fn disarm(&self) -> Report {
        let mut s = self.state();
        s.armed = None;
        s.live = None;
        self.0.active.store(false, Ordering::Release);
        Report {
            in_sync: !s.pending && !self.is_broken(),
            ..s.report
        }
    }

    /// The stream lost its framing or closed: the connection is unusable.
    pub(crate) fn is_broken(&self) -> bool {
        self.0.broken.load(Ordering::Acquire)
    }

    fn set_broken(&self) {
        // Under the lock, so that `settle` cannot miss the wake-up.
        let _s = self.state();
        self.0.broken.store(true, Ordering::Release);
        self.0.settled.notify_waiters();
    }
}

/// `Bind` of a guard statement and `Execute`, parameters in text format.
fn encode_guard_statement(statement: &str, values: &[&[u8]], buf: &mut BytesMut) {
    frontend::bind(
        "",
        statement,
        [0i16],
        values.iter().copied(),
        |v, buf| {
            buf.extend_from_slice(v);
            Ok(IsNull::No)
        },
        [0i16],
        buf,
    )
    .unwrap_or_else(|_| unreachable!("encoding text parameters into memory cannot fail"));
    frontend::execute("", 0, buf).expect("encoding into memory cannot fail");
}

/// The guard statement and its values: the actor always (a transaction sets
/// it, empty or not), or only when there is one (`fetch`: outside a
/// transaction that sets it, `app.actor` is empty anyway).
fn guard_values<'v>(
    tenant: &'v str,
    actor: &'v str,
    timeout: &'v Option<String>,
    always_actor: bool,
) -> (&'static str, Vec<&'v [u8]>) {
    match (timeout, actor) {
        (Some(ms), _) => (
            GUARD_TIMEOUT,
            vec![tenant.as_bytes(), actor.as_bytes(), ms.as_bytes()],
        ),
        (None, "") if !always_actor => (GUARD, vec![tenant.as_bytes()]),
        (None, _) => (GUARD_ACTOR, vec![tenant.as_bytes(), actor.as_bytes()]),
    }
}

/// `fetch`'s guard: `Bind`/`Execute` of a guard statement. No `Sync`: the
/// query's ends the group.
pub(crate) fn encode_guard(tenant: &str, actor: &str, statement_timeout: Option<Duration>) -> BytesMut {
    let timeout = statement_timeout.map(|t| t.as_millis().max(1).to_string());
    let (statement, values) = guard_values(tenant, actor, &timeout, false);
    let mut buf = BytesMut::with_capacity(64 + tenant.len() + actor.len());
    encode_guard_statement(statement, &values, &mut buf);
    buf
}

/// `Parse`/`Bind`/`Execute` of `sql` as the unnamed statement and portal, no parameters.
fn encode_unnamed(sql: &str, buf: &mut BytesMut) {
    frontend::parse("", sql, std::iter::empty(), buf).expect("encoding into memory cannot fail");
    frontend::bind(
        "",
        "",
        std::iter::empty::<i16>(),
        std::iter::empty::<&[u8]>(),
        |_: &[u8], _: &mut BytesMut| Ok(IsNull::No),
        std::iter::empty::<i16>(),
        buf,
    )
    .unwrap_or_else(|_| unreachable!("encoding no parameters cannot fail"));
    frontend::execute("", 0, buf).expect("encoding into memory cannot fail");
}

/// The `SET LOCAL` statements of a transaction's context: the tenant (the
/// canonical text of a validated UUID, or empty for the worker pool), the
/// actor as a quoted literal (the caller refused NUL), the statement
/// timeout in milliseconds.
pub(crate) fn set_local_statements(
    tenant: &str,
    actor: &str,
    statement_timeout: Option<Duration>,
) -> Vec<String> {
    let mut out = vec![
        format!("SET LOCAL app.tenant_id = {}", quote_literal(tenant)),
        format!("SET LOCAL app.actor = {}", quote_literal(actor)),
    ];
    if let Some(t) = statement_timeout {
        out.push(format!("SET LOCAL statement_timeout = {}", t.as_millis().max(1)));
    }
    out
}

/// A string literal that means `value` whatever `standard_conforming_strings`
/// is (postgres-protocol's quoting: quotes doubled, and an `E''` literal
/// with doubled backslashes when there is a backslash).
pub(crate) fn quote_literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
        .trim_start()
        .to_owned()
}

/// A transaction's opening: `Parse`/`Bind`/`Execute` of `BEGIN` (unnamed
/// statement and portal), then the context: under
/// [`TenantContextMode::SetConfig`] the guard with the actor, under
/// [`TenantContextMode::SetLocal`] one `Parse`/`Bind`/`Execute` per
/// `SET LOCAL` statement (a utility statement takes no parameters, and one
/// `Parse` takes one statement). No `Sync`.
pub(crate) fn encode_begin(
    mode: TenantContextMode,
    tenant: &str,
    actor: &str,
    statement_timeout: Option<Duration>,
) -> (BytesMut, Answers) {
    let mut buf = BytesMut::with_capacity(160 + tenant.len() + 2 * actor.len());
    encode_unnamed("BEGIN", &mut buf);
    let answers = match mode {
        TenantContextMode::SetConfig => {
            let timeout = statement_timeout.map(|t| t.as_millis().max(1).to_string());
            let (statement, values) = guard_values(tenant, actor, &timeout, true);
            encode_guard_statement(statement, &values, &mut buf);
            Answers {
                in_group: BEGIN_ANSWERS,
                own_sync: BEGIN_SYNC_ANSWERS,
            }
        }
        TenantContextMode::SetLocal => {
            let statements = set_local_statements(tenant, actor, statement_timeout);
            for sql in &statements {
                encode_unnamed(sql, &mut buf);
            }
            let i = statements.len() - 2;
            Answers {
                in_group: SET_LOCAL_ANSWERS[i],
                own_sync: SET_LOCAL_SYNC_ANSWERS[i],
            }
        }
    };
    (buf, answers)
}

/// The check in front of a transaction's `COMMIT`: `Bind`/`Execute` of
/// `attestor_guard_check` with the context the guard set. No `Sync` (the
/// splice adds it).
pub(crate) fn encode_check(tenant: &str, actor: &str) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64 + tenant.len() + actor.len());
    encode_guard_statement(GUARD_CHECK, &[tenant.as_bytes(), actor.as_bytes()], &mut buf);
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

/// The injected (or watched) request whose answers the reader awaits.
struct Track {
    kind: Kind,
    /// `ReadyForQuery` messages still owed to earlier requests: they pass first.
    ahead: u64,
    /// The injected answers, in order, and how many arrived.
    expect: &'static [u8],
    seen: usize,
    /// The injection carries its own `Sync` (its `ReadyForQuery` is taken out).
    own_sync: bool,
    /// The injected answers are over: the carrying group's own answers
    /// follow, up to its `ReadyForQuery`.
    in_group: bool,
    /// A watched request's tag was read.
    tag_seen: bool,
}

/// How many body bytes of a message the reader keeps (a `ReadyForQuery`'s
/// status, the start of a watched `CommandComplete`'s tag, the first fields
/// of a commit check's `ErrorResponse`, where its SQLSTATE is).
const CAPTURE: usize = 64;

/// The SQLSTATE field (`C`) of the start of an `ErrorResponse` body.
fn error_code(body: &[u8]) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return Some(&tail[..end]);
        }
        rest = &tail[end + 1..];
    }
    None
}

/// A socket under tokio-postgres that injects what was armed and takes its
/// answers out; see the module docs.
pub(crate) struct SpliceStream<S> {
    inner: S,
    splice: Splice,
    /// Bytes to write.
    out: BytesMut,
    /// Bytes written by the driver after the group carrying an opening,
    /// held until that group's `ReadyForQuery` shows the transaction open.
    held: BytesMut,
    /// Outgoing bytes go to `held`.
    holding: bool,
    /// Start holding after the next `Sync`.
    hold_after_sync: bool,
    write: Framing,
    read: Framing,
    /// `ReadyForQuery` messages owed to requests written.
    owed: u64,
    track: Option<Track>,
    /// The current incoming message: its type, whether it goes to the
    /// driver, and the first bytes of its body when they matter.
    kind: u8,
    passing: bool,
    capturing: bool,
    capture: Vec<u8>,
}

impl<S> SpliceStream<S> {
    pub(crate) fn new(inner: S, splice: Splice) -> SpliceStream<S> {
        SpliceStream {
            inner,
            splice,
            out: BytesMut::with_capacity(8 * 1024),
            held: BytesMut::new(),
            holding: false,
            hold_after_sync: false,
            // The client's first message (StartupMessage) has no type byte.
            write: Framing::new(4),
            read: Framing::new(5),
            owed: 0,
            track: None,
            kind: 0,
            passing: true,
            capturing: false,
            capture: Vec::with_capacity(CAPTURE),
        }
    }

    /// What goes in front of a driver message of type `kind` (typed header),
    /// and the track it starts.
    fn inject(&mut self, kind: u8) -> Option<BytesMut> {
        if !self.splice.active() {
            return None;
        }
        let mut s = self.splice.state();
        let free = self.track.is_none();
        let here = match s.armed.as_ref().map(|a| a.0) {
            Some(Kind::Guard) => kind == b'B' && free,
            Some(Kind::Begin) => kind != b'X' && free,
            Some(Kind::Watch | Kind::Commit) => kind == b'Q' && free,
            None => {
                if s.live == Some(Kind::Guard) && s.report.injected && kind == b'B' {
                    s.report.extra_bind = true;
                }
                false
            }
        };
        if !here {
            return None;
        }
        let (what, mut bytes, answers) = s.armed.take().expect("armed");
        s.report.injected = true;
        s.pending = true;
        let own_sync = match what {
            Kind::Begin => !EXTENDED.contains(&kind),
            Kind::Commit => true,
            Kind::Guard | Kind::Watch => false,
        };
        let answers = answers.unwrap_or(Answers {
            in_group: BEGIN_ANSWERS,
            own_sync: BEGIN_SYNC_ANSWERS,
        });
        let expect = match what {
            Kind::Guard => GUARD_ANSWERS,
            Kind::Begin if own_sync => answers.own_sync,
            Kind::Begin => answers.in_group,
            Kind::Watch => b"",
            Kind::Commit => CHECK_ANSWERS,
        };
        self.track = Some(Track {
            kind: what,
            ahead: self.owed,
            expect,
            seen: 0,
            own_sync,
            in_group: what == Kind::Watch,
            tag_seen: false,
        });
        if own_sync {
            frontend::sync(&mut bytes);
            self.owed += 1;
            // An opening holds what follows until the transaction is known
            // to be open; a commit's check needs no hold: when it fails, the
            // transaction is aborted and the `COMMIT` behind it rolls back.
            self.holding = what == Kind::Begin;
        } else if what == Kind::Begin {
            self.hold_after_sync = true;
        }
        Some(bytes)
    }

    /// Outgoing bytes: copied to `out` (or `held`), with what was armed.
    fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.write.remaining == 0 {
                let mut header = [0u8; 5];
                let len = match self.write.header(&mut data)? {
                    Some(h) => {
                        header[..h.len()].copy_from_slice(h);
                        h.len()
                    }
                    None => break,
                };
                let header = &header[..len];
                if len == 4 {
                    // The startup message: answered by a ReadyForQuery once logged in.
                    self.owed += 1;
                } else {
                    let kind = header[0];
                    if let Some(bytes) = self.inject(kind) {
                        self.out.extend_from_slice(&bytes);
                    }
                    if matches!(kind, b'S' | b'Q' | b'F') {
                        self.owed += 1;
                    }
                }
                let to = if self.holding {
                    &mut self.held
                } else {
                    &mut self.out
                };
                to.extend_from_slice(header);
                if len == 5 && header[0] == b'S' && self.hold_after_sync {
                    self.hold_after_sync = false;
                    self.holding = true;
                }
            } else {
                let body = self.write.body(&mut data);
                let to = if self.holding {
                    &mut self.held
                } else {
                    &mut self.out
                };
                to.extend_from_slice(body);
            }
        }
        Ok(())
    }

    fn fail(&self, what: &str) -> io::Error {
        self.splice.set_broken();
        desync(what)
    }

    /// An incoming message of type `kind` starts: whether it goes to the driver.
    fn begin_message(&mut self, kind: u8) -> io::Result<bool> {
        self.kind = kind;
        self.capture.clear();
        self.capturing = kind == b'Z';
        if matches!(kind, b'N' | b'A' | b'S') {
            // Notice, notification, parameter status: the driver's, whenever they come.
            return Ok(true);
        }
        let Some(t) = &mut self.track else {
            return Ok(true);
        };
        if t.ahead > 0 {
            return Ok(true);
        }
        if t.in_group {
            if kind == b'C' && t.kind == Kind::Watch && !t.tag_seen {
                self.capturing = true;
            }
            return Ok(true);
        }
        if kind == b'E' {
            self.splice.state().report.failed = true;
            // A commit check's error says why (its SQLSTATE, read at its end).
            self.capturing = t.kind == Kind::Commit;
            if t.own_sync {
                // Its ReadyForQuery follows; the driver's held message never ran.
                t.seen = t.expect.len() - 1;
                return Ok(false);
            }
            // The server skips the driver's statement: it fails with this error.
            t.in_group = true;
            return Ok(true);
        }
        if t.expect.get(t.seen) == Some(&kind) {
            t.seen += 1;
            if t.seen == t.expect.len() && !t.own_sync {
                t.in_group = true;
            }
            return Ok(false);
        }
        let what = match t.kind {
            Kind::Guard => "the guard's",
            Kind::Begin => "the opening's",
            Kind::Watch => "a watched",
            Kind::Commit => "the commit check's",
        };
        Err(self.fail(&format!(
            "unexpected message {:?} where {what} answer belongs",
            kind as char
        )))
    }

    /// The current incoming message ended.
    fn end_message(&mut self) -> io::Result<()> {
        match self.kind {
            b'Z' => {
                if self.owed == 0 {
                    return Err(self.fail("a ReadyForQuery no request is owed"));
                }
                self.owed -= 1;
                let status = self.capture.first().copied().unwrap_or(0);
                if let Some(t) = &mut self.track {
                    if t.ahead > 0 {
                        t.ahead -= 1;
                    } else if t.in_group || (t.own_sync && t.seen == t.expect.len()) {
                        return self.complete(status);
                    }
                }
            }
            b'E' if self.capturing => {
                // The commit check's own refusal is the failed cast (22P02);
                // anything else (an already aborted transaction, 25P02) is not
                // a changed context.
                let code = error_code(&self.capture);
                let mut s = self.splice.state();
                match code {
                    Some(b"22P02") => s.report.check_failed = true,
                    Some(b"25P02") => {}
                    _ => s.report.check_broken = true,
                }
            }
            b'C' if self.capturing => {
                if let Some(t) = &mut self.track {
                    t.tag_seen = true;
                    if self.capture.starts_with(b"ROLLBACK") {
                        self.splice.state().report.rolled_back = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The tracked request's group ended with a ReadyForQuery of `status`.
    fn complete(&mut self, status: u8) -> io::Result<()> {
        let Some(t) = self.track.take() else {
            return Ok(());
        };
        if t.kind == Kind::Commit {
            // The check's group is over; the `COMMIT` written right behind
            // it is the next request: watch it (still pending).
            self.track = Some(Track {
                kind: Kind::Watch,
                ahead: 0,
                expect: b"",
                seen: 0,
                own_sync: false,
                in_group: true,
                tag_seen: false,
            });
            return Ok(());
        }
        let opened = t.kind != Kind::Begin || matches!(status, b'T' | b'E');
        {
            let mut s = self.splice.state();
            s.report.status = Some(status);
            s.pending = false;
            if !opened {
                self.splice.0.broken.store(true, Ordering::Release);
            }
        }
        self.splice.0.settled.notify_waiters();
        if !opened {
            self.held.clear();
            return Err(desync("the transaction's opening did not open a transaction"));
        }
        if t.kind == Kind::Begin {
            self.holding = false;
            self.hold_after_sync = false;
            let held = self.held.split();
            self.out.extend_from_slice(&held);
        }
        Ok(())
    }

    /// Incoming bytes, filtered in place: the injected messages' answers are
    /// cut out. Returns how many bytes remain at the front of `data`. The
    /// bytes that pass are moved once per run, not once per message (a page
    /// of rows behind a guard's answers is one move).
    fn filter(&mut self, data: &mut [u8]) -> io::Result<usize> {
        // `data[run..r]`: passing bytes not yet moved down to `w`.
        let (mut r, mut w, mut run) = (0, 0, 0);
        while r < data.len() {
            // The common case, most of the traffic (every row of a page): at
            // a message boundary, whole header in hand (a whole message for
            // ReadyForQuery), no injected answer due. The message is the
            // driver's: step over it by its length.
            let fast = match &self.track {
                None => true,
                Some(t) => {
                    data.get(r) != Some(&b'Z') && (t.ahead > 0 || (t.in_group && t.kind != Kind::Watch))
                }
            };
            if fast && self.read.remaining == 0 && self.read.header_len == 0 && data.len() - r >= 6 {
                let len = u32::from_be_bytes(data[r + 1..r + 5].try_into().expect("4 bytes")) as usize;
                if len < 4 {
                    return Err(self.fail("a message length below 4"));
                }
                if data[r] == b'Z' {
                    if self.owed == 0 {
                        return Err(self.fail("a ReadyForQuery no request is owed"));
                    }
                    self.owed -= 1;
                }
                let take = (1 + len).min(data.len() - r);
                self.read.remaining = 1 + len - take;
                self.kind = data[r];
                self.passing = true;
                self.capturing = false;
                r += take;
                continue;
            }
            let chunk = r;
            let mut rest: &[u8] = &data[r..];
            let ended;
            if self.read.remaining == 0 {
                if self.read.header_len == 0 {
                    // The type byte decides; the rest of the message follows it.
                    self.passing = self.begin_message(rest[0])?;
                }
                match self.read.header(&mut rest) {
                    Ok(header) => ended = header.is_some() && self.read.remaining == 0,
                    Err(e) => {
                        self.splice.set_broken();
                        return Err(e);
                    }
                }
            } else {
                let body = self.read.body(&mut rest);
                if self.capturing {
                    let room = CAPTURE.saturating_sub(self.capture.len()).min(body.len());
                    self.capture.extend_from_slice(&body[..room]);
                }
                ended = self.read.remaining == 0;
            }
            r = data.len() - rest.len();
            if !self.passing {
                w = move_down(data, run..chunk, w);
                run = r;
            }
            if ended && (self.capturing || self.kind == b'Z' || self.track.is_some()) {
                self.end_message()?;
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

impl<S> Drop for SpliceStream<S> {
    fn drop(&mut self) {
        // The connection task ended: nothing pending will ever be answered.
        self.splice.set_broken();
    }
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for SpliceStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Bytes released by an answer (held behind a transaction's
            // opening) go out without waiting for the driver's next write.
            if !this.out.is_empty() {
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let after = buf.filled().len();
            if after == before {
                return Poll::Ready(Ok(())); // end of stream
            }
            let kept = this.filter(&mut buf.filled_mut()[before..after])?;
            buf.set_filled(before + kept);
            if !this.out.is_empty() {
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if kept > 0 {
                return Poll::Ready(Ok(()));
            }
            // Only injected answers arrived: read on.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SpliceStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.splice.is_broken() {
            return Poll::Ready(Err(desync("the stream is broken")));
        }
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
/// guard statements of `mode` on it (the `set_config` guards only under
/// [`TenantContextMode::SetConfig`]; the commit check in both). Plain TCP
/// or Unix socket, no TLS (as diesel-async's own `establish`).
pub(crate) async fn connect(
    url: &str,
    mode: TenantContextMode,
) -> Result<(AsyncPgConnection, Splice), ConnectionError> {
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
    let prepare = match mode {
        TenantContextMode::SetConfig => format!("{PREPARE_GUARDS};\n{PREPARE_CHECK}"),
        TenantContextMode::SetLocal => PREPARE_CHECK.to_owned(),
    };
    conn.batch_execute(&prepare)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok((conn, splice))
}

#[cfg(test)]
mod tests;
