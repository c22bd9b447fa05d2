//! The splice byte by byte: what goes out where, which answers are taken
//! out, how answers owed to earlier requests are told apart, and when the
//! stream fails.

use super::*;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

const STARTUP: [u8; 8] = [0, 0, 0, 8, 0, 3, 0, 0];

fn z(status: u8) -> Vec<u8> {
    message(b'Z', &[status])
}

/// A stream past its startup (answered: nothing owed).
fn stream() -> (SpliceStream<tokio::io::DuplexStream>, Splice) {
    let splice = Splice::default();
    let (a, _b) = tokio::io::duplex(64);
    let mut s = SpliceStream::new(a, splice.clone());
    s.feed(&STARTUP).unwrap();
    let mut login = z(b'I');
    assert_eq!(s.filter(&mut login).unwrap(), 6);
    s.out.clear();
    (s, splice)
}

/// Feeds `incoming` split at `cut`; returns what reached the driver.
fn read_split(
    s: &mut SpliceStream<tokio::io::DuplexStream>,
    incoming: &[u8],
    cut: usize,
) -> io::Result<Vec<u8>> {
    let mut passed = Vec::new();
    for part in [&incoming[..cut], &incoming[cut..]] {
        let mut data = part.to_vec();
        let kept = s.filter(&mut data)?;
        passed.extend_from_slice(&data[..kept]);
    }
    Ok(passed)
}

fn bind() -> Vec<u8> {
    message(b'B', b"\0\0\0\0\0\0\0\0")
}
fn exec() -> Vec<u8> {
    message(b'E', b"\0\0\0\0\0")
}
fn sync() -> Vec<u8> {
    message(b'S', b"")
}
fn parse() -> Vec<u8> {
    message(b'P', b"\0SELECT 2\0\0\0")
}

/// BindComplete, one DataRow, CommandComplete, ReadyForQuery.
fn answers_to_the_query() -> Vec<u8> {
    [
        message(b'2', b""),
        message(b'D', b"\0\0"),
        message(b'C', b"SELECT 1\0"),
        z(b'I'),
    ]
    .concat()
}

fn guard_answers() -> Vec<u8> {
    [
        message(b'2', b""),
        message(b'D', b"\0\x01\0\0\0\x01x"),
        message(b'C', b"SELECT 1\0"),
    ]
    .concat()
}

fn begin_answers() -> Vec<u8> {
    [
        message(b'1', b""),
        message(b'2', b""),
        message(b'C', b"BEGIN\0"),
        guard_answers(),
    ]
    .concat()
}

/// A stream that has sent one `Bind`/`Execute`/`Sync` with the guard armed.
fn sent_with(guard: BytesMut) -> (SpliceStream<tokio::io::DuplexStream>, Splice) {
    let (mut s, splice) = stream();
    splice.arm(guard);
    s.feed(&[bind(), exec(), sync()].concat()).unwrap();
    (s, splice)
}

#[test]
fn the_guard_goes_in_front_of_the_next_bind_once_and_a_second_bind_is_reported() {
    let (mut s, splice) = stream();
    splice.arm(encode_guard("t", "a", None));
    let all: Vec<u8> = [parse(), bind(), exec(), sync(), bind(), exec(), sync()].concat();
    // Fed one byte at a time: framing must not depend on write boundaries.
    for b in &all {
        s.feed(std::slice::from_ref(b)).unwrap();
    }
    let guard = encode_guard("t", "a", None);
    let expected: Vec<u8> = [
        &parse()[..],
        &guard,
        &bind(),
        &exec(),
        &sync(),
        &bind(),
        &exec(),
        &sync(),
    ]
    .concat();
    assert_eq!(&s.out[..], &expected[..]);
    let d = splice.disarm();
    assert!(
        d.injected && !d.in_sync && d.extra_bind,
        "{d:?}: answers still due, two Binds"
    );
}

#[test]
fn the_guards_answers_are_taken_out_and_its_error_passed_on() {
    let notice = message(b'N', b"Mhello\0\0");
    let incoming = [
        message(b'2', b""),
        message(b'D', b"\0\x01\0\0\0\x01x"),
        notice.clone(),
        message(b'C', b"SELECT 1\0"),
        answers_to_the_query(),
    ]
    .concat();
    for cut in 0..=incoming.len() {
        let (mut s, splice) = sent_with(encode_guard("t", "a", Some(Duration::from_secs(1))));
        let passed = read_split(&mut s, &incoming, cut).unwrap();
        assert_eq!(
            passed,
            [notice.clone(), answers_to_the_query()].concat(),
            "cut {cut}"
        );
        let d = splice.disarm();
        assert_eq!(
            d,
            Report {
                injected: true,
                in_sync: true,
                status: Some(b'I'),
                ..Report::default()
            },
            "cut {cut}"
        );
    }

    // A failing guard: its ErrorResponse reaches the driver as the query's.
    let (mut s, splice) = sent_with(encode_guard("t", "a", None));
    let answers = [message(b'E', b"SERROR\0\0"), z(b'I')].concat();
    assert_eq!(read_split(&mut s, &answers, 3).unwrap(), answers);
    let d = splice.disarm();
    assert!(d.injected && d.in_sync && d.failed, "{d:?}");
}

#[test]
fn a_statement_that_leaves_a_transaction_open_is_reported() {
    let (mut s, splice) = sent_with(encode_guard("t", "", None));
    let answers = [message(b'2', b""), message(b'C', b"BEGIN\0"), z(b'T')].concat();
    let incoming = [guard_answers(), answers.clone()].concat();
    assert_eq!(read_split(&mut s, &incoming, 0).unwrap(), answers);
    assert_eq!(splice.disarm().status, Some(b'T'));
}

#[test]
fn answers_owed_to_earlier_requests_pass_first_however_split() {
    // A Close+Sync (a dropped statement) and a prepare went out unanswered;
    // then the guarded statement. Their answers come late, split, with a
    // notice and a notification in between.
    let notice = message(b'N', b"Mverbose\0\0");
    let notify = message(b'A', b"\0\0\0\x01chan\0payload\0");
    let close = [message(b'C', b"\0Ss1\0"), sync()].concat();
    let prepare = [parse(), message(b'D', b"Ss1\0"), sync()].concat();
    let earlier = [
        message(b'3', b""),
        notice.clone(),
        z(b'I'),
        message(b'1', b""),
        notify.clone(),
        message(b't', b"\0\0"),
        message(b'n', b""),
        z(b'I'),
    ]
    .concat();
    let guard = [
        message(b'2', b""),
        notice.clone(),
        message(b'D', b"\0\x01\0\0\0\x01x"),
        notify.clone(),
        message(b'C', b"SELECT 1\0"),
    ]
    .concat();
    let incoming = [earlier.clone(), guard, answers_to_the_query()].concat();
    let expected = [earlier, notice, notify, answers_to_the_query()].concat();
    for cut in 0..=incoming.len() {
        let (mut s, splice) = stream();
        s.feed(&[close.clone(), prepare.clone()].concat()).unwrap();
        splice.arm(encode_guard("t", "", None));
        s.feed(&[bind(), exec(), sync()].concat()).unwrap();
        let passed = read_split(&mut s, &incoming, cut).unwrap();
        assert_eq!(passed, expected, "cut {cut}");
        let d = splice.disarm();
        assert!(
            d.injected && d.in_sync && !d.failed && d.status == Some(b'I'),
            "cut {cut}: {d:?}"
        );
    }
}

#[test]
fn a_late_error_of_an_earlier_request_is_not_the_guards() {
    // The earlier request's error arrives after the guard went out: it
    // belongs to the earlier request, and the guard's answers follow.
    let (mut s, splice) = stream();
    s.feed(&[message(b'Q', b"SELECT 1\0")].concat()).unwrap();
    splice.arm(encode_guard("t", "", None));
    s.feed(&[bind(), exec(), sync()].concat()).unwrap();
    let earlier = [message(b'E', b"SERROR\0C57014\0\0"), z(b'I')].concat();
    let incoming = [earlier.clone(), guard_answers(), answers_to_the_query()].concat();
    assert_eq!(
        read_split(&mut s, &incoming, 0).unwrap(),
        [earlier, answers_to_the_query()].concat()
    );
    let d = splice.disarm();
    assert!(d.in_sync && !d.failed, "{d:?}");
}

#[test]
fn a_ready_for_query_nobody_is_owed_breaks_the_connection() {
    let (mut s, splice) = stream();
    assert!(s.filter(&mut z(b'I')).is_err());
    assert!(splice.is_broken());
}

#[test]
fn anything_else_where_the_guards_answer_belongs_breaks_the_connection() {
    let (mut s, splice) = sent_with(encode_guard("t", "a", None));
    assert!(s.filter(&mut message(b'1', b"")).is_err());
    assert!(splice.is_broken());
    let d = splice.disarm();
    assert!(d.injected && !d.in_sync, "{d:?}");
}

#[test]
fn the_opening_rides_in_the_first_group_and_holds_what_follows_its_sync() {
    let begin = encode_begin(TenantContextMode::SetConfig, "t", "a", None);
    // Not in front of Terminate: a connection closed unused opens nothing.
    let (mut s, splice) = stream();
    splice.arm_begin(begin.clone());
    s.feed(&message(b'X', b"")).unwrap();
    assert_eq!(&s.out[..], &message(b'X', b"")[..]);
    assert!(!splice.disarm().injected);

    let (mut s, splice) = stream();
    splice.arm_begin(begin.clone());
    let prepare = [parse(), message(b'D', b"Ss1\0"), sync()].concat();
    let statement = [bind(), exec(), sync()].concat();
    for b in [prepare.clone(), statement.clone()].concat() {
        s.feed(&[b]).unwrap();
    }
    // The statement after the prepare's Sync waits for the prepare's answer.
    assert_eq!(&s.out[..], &[&begin.0[..], &prepare].concat()[..]);
    s.out.clear();
    let prepared = [
        message(b'1', b""),
        message(b't', b"\0\0"),
        message(b'n', b""),
        z(b'T'),
    ]
    .concat();
    let incoming = [begin_answers(), prepared.clone()].concat();
    assert_eq!(read_split(&mut s, &incoming, 7).unwrap(), prepared);
    assert_eq!(
        &s.out[..],
        &statement[..],
        "released by the ReadyForQuery in a transaction"
    );
    let d = splice.disarm();
    assert!(
        d.injected && d.in_sync && !d.failed && d.status == Some(b'T'),
        "{d:?}"
    );
}

#[test]
fn an_opening_that_did_not_open_a_transaction_fails_the_stream_and_sends_nothing_more() {
    // The cancel landed on BEGIN (or the opening failed before it): the
    // server skipped the group, and the ReadyForQuery says idle.
    let (mut s, splice) = stream();
    splice.arm_begin(encode_begin(TenantContextMode::SetConfig, "t", "a", None));
    let statement = [bind(), exec(), sync()].concat();
    s.feed(&[parse(), sync(), statement.clone()].concat()).unwrap();
    let before = s.out.len();
    let error = message(b'E', b"SERROR\0C57014\0\0");
    let mut incoming = [error.clone(), z(b'I')].concat();
    assert!(s.filter(&mut incoming).is_err());
    assert_eq!(s.out.len(), before, "the held statement never goes out");
    assert!(splice.is_broken());
    let d = splice.disarm();
    assert!(d.failed && !d.in_sync && d.status == Some(b'I'), "{d:?}");
}

#[test]
fn an_opening_in_front_of_a_simple_query_gets_its_own_sync_and_holds_the_query() {
    let begin = encode_begin(TenantContextMode::SetConfig, "t", "", None);
    let query = message(b'Q', b"SAVEPOINT a\0");
    let answers = [message(b'C', b"SAVEPOINT\0"), z(b'T')].concat();
    for (status, failed) in [(b'T', false), (b'E', true)] {
        let (mut s, splice) = stream();
        splice.arm_begin(begin.clone());
        s.feed(&query).unwrap();
        let mut expected = begin.0.to_vec();
        expected.extend_from_slice(&sync());
        assert_eq!(&s.out[..], &expected[..], "the query waits");
        s.out.clear();
        let own = if failed {
            [
                message(b'1', b""),
                message(b'2', b""),
                message(b'C', b"BEGIN\0"),
                message(b'E', b"SERROR\0\0"),
                z(status),
            ]
            .concat()
        } else {
            [begin_answers(), z(status)].concat()
        };
        assert_eq!(read_split(&mut s, &own, 4).unwrap(), b"", "all taken out");
        assert_eq!(&s.out[..], &query[..], "released");
        assert_eq!(read_split(&mut s, &answers, 2).unwrap(), answers);
        let d = splice.disarm();
        assert!(d.injected && d.in_sync && d.failed == failed, "{d:?}");
    }
}

#[test]
fn a_watched_commit_reports_its_tag_and_status() {
    for (tag, rolled_back) in [(&b"COMMIT\0"[..], false), (b"ROLLBACK\0", true)] {
        let (mut s, splice) = stream();
        // An earlier answer still due ends with a ROLLBACK tag of its own.
        s.feed(&message(b'Q', b"ROLLBACK TO SAVEPOINT a\0")).unwrap();
        splice.arm_watch();
        s.feed(&message(b'Q', b"COMMIT\0")).unwrap();
        let incoming = [message(b'C', b"ROLLBACK\0"), z(b'T'), message(b'C', tag), z(b'I')].concat();
        for cut in [0, 3, 8, 13, incoming.len()] {
            let (mut s2, splice2) = stream();
            s2.feed(&message(b'Q', b"ROLLBACK TO SAVEPOINT a\0")).unwrap();
            splice2.arm_watch();
            s2.feed(&message(b'Q', b"COMMIT\0")).unwrap();
            assert_eq!(read_split(&mut s2, &incoming, cut).unwrap(), incoming);
            let d = splice2.disarm();
            assert!(
                d.in_sync && d.rolled_back == rolled_back && d.status == Some(b'I'),
                "cut {cut}: {d:?}"
            );
        }
        assert_eq!(read_split(&mut s, &incoming, 0).unwrap(), incoming);
        assert_eq!(splice.disarm().rolled_back, rolled_back);
    }
}

#[test]
fn framing_holds_across_unguarded_traffic_at_every_read_boundary() {
    let rows: Vec<u8> = (0..20u8)
        .flat_map(|i| message(b'D', &[0, 1, 0, 0, 0, 2, i, i]))
        .collect();
    let unguarded = [message(b'2', b""), rows, message(b'C', b"SELECT 20\0"), z(b'I')].concat();
    for cut in 0..=unguarded.len() {
        let (mut s, splice) = stream();
        s.feed(&[bind(), exec(), sync()].concat()).unwrap();
        assert_eq!(
            read_split(&mut s, &unguarded, cut).unwrap(),
            unguarded,
            "cut {cut}"
        );
        splice.arm(encode_guard("t", "", None));
        s.feed(&[bind(), exec(), sync()].concat()).unwrap();
        let mut data = [guard_answers(), answers_to_the_query()].concat();
        let kept = s.filter(&mut data).unwrap();
        assert_eq!(&data[..kept], &answers_to_the_query()[..], "cut {cut}");
        let d = splice.disarm();
        assert!(d.injected && d.in_sync && !d.failed, "cut {cut}: {d:?}");
    }
    // A length below 4 in the fast path breaks the connection too.
    let (mut s, splice) = stream();
    let mut bad = [b'D', 0, 0, 0, 3, 0].to_vec();
    assert!(s.filter(&mut bad).is_err());
    assert!(splice.is_broken());
}

#[test]
fn nothing_is_injected_unless_armed() {
    let (mut s, splice) = stream();
    let bytes = [bind(), exec(), sync()].concat();
    s.feed(&bytes).unwrap();
    assert_eq!(&s.out[..], &bytes[..]);
    let d = splice.disarm();
    assert!(!d.injected && d.in_sync && !d.failed, "{d:?}");
}

#[test]
fn a_commit_goes_out_behind_the_context_check_whose_answers_are_taken_out() {
    let check = encode_check("t", "a");
    let commit = message(b'Q', b"COMMIT\0");
    let check_ok = [
        message(b'2', b""),
        message(b'D', b"\0\x01\0\0\0\x01t"),
        message(b'C', b"SELECT 1\0"),
        z(b'T'),
    ]
    .concat();
    let mismatch = [message(b'E', b"SERROR\0VERROR\0C22P02\0Mno\0\0"), z(b'E')].concat();
    let aborted = [message(b'E', b"SERROR\0VERROR\0C25P02\0Mno\0\0"), z(b'E')].concat();
    let gone = [message(b'E', b"SERROR\0VERROR\0C26000\0Mno\0\0"), z(b'E')].concat();
    for (check_answers, tag, check_failed, failed, broken) in [
        (check_ok, &b"COMMIT\0"[..], false, false, false),
        (mismatch, b"ROLLBACK\0", true, true, false),
        (aborted, b"ROLLBACK\0", false, true, false),
        (gone, b"ROLLBACK\0", false, true, true),
    ] {
        let driver = [message(b'C', tag), z(b'I')].concat();
        let incoming = [check_answers.clone(), driver.clone()].concat();
        for cut in 0..=incoming.len() {
            let (mut s, splice) = stream();
            splice.arm_commit(check.clone());
            s.feed(&commit).unwrap();
            // The check and its own Sync go out right in front of the COMMIT, not held.
            assert_eq!(&s.out[..], &[&check[..], &sync(), &commit].concat()[..]);
            assert_eq!(read_split(&mut s, &incoming, cut).unwrap(), driver, "cut {cut}");
            let d = splice.disarm();
            assert!(
                d.injected
                    && d.in_sync
                    && d.check_failed == check_failed
                    && d.check_broken == broken
                    && d.failed == failed
                    && d.rolled_back == failed
                    && d.status == Some(b'I'),
                "cut {cut}: {d:?}"
            );
        }
    }
}

#[test]
fn a_set_local_opening_sends_one_statement_per_setting_and_takes_their_answers_out() {
    let (begin, answers) = encode_begin(
        TenantContextMode::SetLocal,
        "t",
        "o'b",
        Some(Duration::from_millis(5)),
    );
    let text = String::from_utf8_lossy(&begin).into_owned();
    for sql in [
        "BEGIN",
        "SET LOCAL app.tenant_id = 't'",
        "SET LOCAL app.actor = 'o''b'",
        "SET LOCAL statement_timeout = 5",
    ] {
        assert!(text.contains(&format!("{sql}\0")), "{sql} in {text:?}");
    }
    assert!(!text.contains("set_config"), "{text:?}");
    let set = |tag: &[u8]| [message(b'1', b""), message(b'2', b""), message(b'C', tag)].concat();
    let opening = [set(b"BEGIN\0"), set(b"SET\0"), set(b"SET\0"), set(b"SET\0")].concat();
    let (mut s, splice) = stream();
    splice.arm_begin((begin.clone(), answers));
    s.feed(&[bind(), exec(), sync()].concat()).unwrap();
    let driver = answers_to_the_query();
    let driver = [&driver[..driver.len() - 6], &z(b'T')[..]].concat();
    let incoming = [opening, driver.clone()].concat();
    assert_eq!(read_split(&mut s, &incoming, 9).unwrap(), driver);
    let d = splice.disarm();
    assert!(
        d.injected && d.in_sync && !d.failed && d.status == Some(b'T'),
        "{d:?}"
    );
}
