//! `RekorSubmitter` against a local HTTP server (127.0.0.1, started by the
//! test): status-code mapping, 409 → fetch existing, proof verification,
//! timeouts; and a worker completing jobs through it end to end.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attestor_queue::testing::{fake_log_index, fake_rekor_entry};
use attestor_queue::*;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).unwrap(),
        delay: Duration::ZERO,
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1 (one request per connection).
async fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, content_length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0usize);
                        break (pos + 4, len);
                    }
                };
                while buf.len() < head_end + content_length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut first = head.lines().next().unwrap_or("").split_whitespace();
                let req = Request {
                    method: first.next().unwrap_or("").to_owned(),
                    path: first.next().unwrap_or("").to_owned(),
                    body: buf[head_end..].to_vec(),
                };
                log.lock().unwrap().push(req.clone());
                let r = handler(&req);
                if !r.delay.is_zero() {
                    tokio::time::sleep(r.delay).await;
                }
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    r.status,
                    r.body.len()
                );
                for (k, v) in &r.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.write_all(&r.body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, seen)
}

fn proposed() -> Value {
    json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {}})
}

fn entry() -> Value {
    let job = uuid::Uuid::new_v4();
    fake_rekor_entry(job, fake_log_index(job))
}

#[tokio::test]
async fn created_entry_is_returned_after_its_proof_verifies() {
    let e = entry();
    let body = e.clone();
    let (base, seen) = serve(Arc::new(move |_| reply(201, body.clone()))).await;
    let s = RekorSubmitter::new(&base).unwrap();
    assert_eq!(s.submit_entry(&proposed()).await.unwrap(), e);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/api/v1/log/entries");
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].body).unwrap(),
        proposed()
    );
}

#[tokio::test]
async fn a_proof_that_does_not_verify_is_retried() {
    let mut e = entry();
    let uuid = e.as_object().unwrap().keys().next().unwrap().clone();
    e[&uuid]["verification"]["inclusionProof"]["rootHash"] = json!("00".repeat(32));
    let (base, _) = serve(Arc::new(move |_| reply(201, e.clone()))).await;
    let err = RekorSubmitter::new(&base)
        .unwrap()
        .submit_entry(&proposed())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SubmitError::Retryable(m) if m.contains("inclusion proof")),
        "{err:?}"
    );
}

#[tokio::test]
async fn conflict_fetches_the_existing_entry() {
    let e = entry();
    let uuid = e.as_object().unwrap().keys().next().unwrap().clone();
    let body = e.clone();
    let location = format!("/api/v1/log/entries/{uuid}");
    let loc = location.clone();
    let (base, seen) = serve(Arc::new(move |r: &Request| {
        if r.method == "POST" {
            let mut rep = reply(
                409,
                json!({"code": 409, "message": "an equivalent entry already exists"}),
            );
            rep.headers.push(("Location".into(), loc.clone()));
            rep
        } else if r.path == loc {
            reply(200, body.clone())
        } else {
            reply(404, json!({}))
        }
    }))
    .await;
    assert_eq!(
        RekorSubmitter::new(&base)
            .unwrap()
            .submit_entry(&proposed())
            .await
            .unwrap(),
        e
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[1].method.as_str(), seen[1].path.as_str()),
            ("GET", location.as_str())
        );
    }

    // Without a Location header: search by content.
    let e2 = entry();
    let b2 = e2.clone();
    let (base, seen) = serve(Arc::new(move |r: &Request| {
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/api/v1/log/entries") => reply(409, json!({})),
            ("POST", "/api/v1/log/entries/retrieve") => reply(200, json!([b2.clone()])),
            _ => reply(404, json!({})),
        }
    }))
    .await;
    assert_eq!(
        RekorSubmitter::new(&base)
            .unwrap()
            .submit_entry(&proposed())
            .await
            .unwrap(),
        e2
    );
    let seen = seen.lock().unwrap();
    let body: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body, json!({"entries": [proposed()]}));
}

#[tokio::test]
async fn status_codes_map_to_retry_or_dead_letter() {
    for (status, retryable) in [
        (400, false),
        (403, false),
        (422, false),
        (408, true),
        (429, true),
        (500, true),
        (503, true),
    ] {
        let (base, _) = serve(Arc::new(move |_| reply(status, json!({"message": "nope"})))).await;
        let err = RekorSubmitter::new(&base)
            .unwrap()
            .submit_entry(&proposed())
            .await
            .unwrap_err();
        assert_eq!(
            matches!(err, SubmitError::Retryable(_)),
            retryable,
            "{status}: {err:?}"
        );
        assert!(err.to_string().contains(&status.to_string()));
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    let (base, _) = serve(Arc::new(|_| Reply {
        delay: Duration::from_secs(5),
        ..reply(201, json!({}))
    }))
    .await;
    let start = Instant::now();
    let s = RekorSubmitter::with_timeout(&base, Duration::from_millis(300)).unwrap();
    assert!(matches!(
        s.submit_entry(&proposed()).await,
        Err(SubmitError::Retryable(_))
    ));
    assert!(start.elapsed() < Duration::from_secs(4));

    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = RekorSubmitter::new(format!("http://127.0.0.1:{port}")).unwrap();
    assert!(matches!(
        s.submit_entry(&proposed()).await,
        Err(SubmitError::Retryable(_))
    ));
    // Malformed 201 body: retry (the log will answer 409 next time).
    let (base, _) = serve(Arc::new(|_| reply(201, json!({"not": "an entry"})))).await;
    assert!(matches!(
        RekorSubmitter::new(&base)
            .unwrap()
            .submit_entry(&proposed())
            .await,
        Err(SubmitError::Retryable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_completes_jobs_through_the_http_submitter() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    let ok = enqueue_one(&db, t, "accepted", 5).await.job_id;
    let bad = enqueue_one(&db, t, "rejected", 5).await.job_id;
    // The "log": accepts envelopes whose payload is "accepted", refuses others (400).
    let (base, seen) = serve(Arc::new(|r: &Request| {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let env: Value =
            serde_json::from_str(body["spec"]["proposedContent"]["envelope"].as_str().unwrap()).unwrap();
        if env["payload"] == json!("YWNjZXB0ZWQ=") {
            let job = uuid::Uuid::new_v4();
            reply(201, fake_rekor_entry(job, 7))
        } else {
            reply(400, json!({"message": "invalid verifier"}))
        }
    }))
    .await;
    let sub = Arc::new(RekorSubmitter::new(&base).unwrap());
    let cfg = WorkerConfig::new("http-worker", fake_root()).poll_interval(Duration::from_millis(50));
    let h = Worker::new(cfg, tdb.worker_url(), db.clone(), sub).start();
    let mut admin = connect(&tdb.admin_url()).await;
    let start = Instant::now();
    loop {
        let a = job_state(&mut admin, ok).await;
        let b = job_state(&mut admin, bad).await;
        if a.status == "succeeded" && b.status == "dead" {
            assert!(a.rekor_entry_id.is_some());
            assert!(b.last_error.unwrap().contains("400"));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.completed, m.dead_lettered), (1, 1));
    assert_eq!(seen.lock().unwrap().len(), 2);
}
