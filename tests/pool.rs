//! The backend connection pool: sequential requests share one backend connection, whatever
//! their kind, and a connection the backend closed while it sat idle is replaced, never
//! turned into a failed request.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::raw::{chunked, sized, Conn, RawBackend};
use common::{wait_until, ConfDir, InProcess};

/// Answers every request on a connection, until the agent closes it: NDJSON streams for
/// `/api/generate`, a small JSON object for everything else.
async fn keep_alive_backend() -> RawBackend {
    RawBackend::start(|mut conn: Conn| async move {
        while let Some((head, _)) = conn.read_request().await {
            let answer = if head.target == "/api/generate" {
                chunked(
                    "application/x-ndjson",
                    &[
                        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
                        "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":1}\n",
                    ],
                )
            } else {
                sized("application/json", r#"{"version":"0.12.6"}"#)
            };
            if !conn.write(&answer).await {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn sequential_requests_of_every_kind_share_one_backend_connection() {
    let backend = keep_alive_backend().await;
    let agent = InProcess::start(ConfDir::single(&backend.url(), "passive = true")).await;
    let client = reqwest::Client::new();
    for i in 0..12 {
        let res = if i % 2 == 0 {
            client
                .post(format!("{}/api/generate", agent.url()))
                .body(r#"{"model":"m","prompt":"x"}"#)
                .send()
                .await
        } else {
            client
                .get(format!("{}/api/version", agent.url()))
                .send()
                .await
        }
        .unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.ends_with("}\n") || text.ends_with('}'), "{text}");
    }
    assert_eq!(backend.requests(), 12);
    assert_eq!(
        backend.accepted(),
        1,
        "every request after the first reused the connection"
    );
    let m = agent.metrics().await;
    assert_eq!(
        m.value("ollama_requests_success", &[("model", "m:latest")]),
        6.0
    );
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_replaced_without_an_error() {
    let closed = Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    // One answer per connection, then a close the agent is not told about in advance (no
    // `Connection: close`): the pooled connection is dead when the next request comes.
    let backend = RawBackend::start(move |mut conn: Conn| {
        let closed = seen.clone();
        async move {
            if conn.read_request().await.is_some() {
                conn.say(&sized("application/json", r#"{"version":"0.12.6"}"#))
                    .await;
                closed.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let agent = InProcess::start(ConfDir::single(&backend.url(), "passive = true")).await;
    let client = reqwest::Client::new();
    for round in 1..=5 {
        let res = client
            .get(format!("{}/api/version", agent.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "round {round}");
        assert_eq!(res.text().await.unwrap(), r#"{"version":"0.12.6"}"#);
        wait_until("the backend closed the connection", || {
            closed.load(Ordering::SeqCst) == round
        })
        .await;
    }
    assert_eq!(backend.accepted(), 5);
}
