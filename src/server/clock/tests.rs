//! The clock of one socket, on real loopback sockets with 50 ms clocks: every expiry is
//! awaited as an event; the "no clock" cases check that a read is still pending several
//! clocks later, which only a broken clock can fail.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const CLOCK: Duration = Duration::from_millis(50);
/// Several clocks: a read still pending after this was not timed.
const LONGER: Duration = Duration::from_millis(300);
/// The bound on waiting for an event.
const WAIT: Duration = Duration::from_secs(30);

/// A client socket and the agent's side of it, watched with 50 ms clocks.
async fn pair() -> (TcpStream, Watched, Arc<Activity>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let limits = Limits {
        client_header_timeout: CLOCK,
        keepalive_timeout: CLOCK,
        max_connections: 0,
    };
    let activity = Arc::new(Activity::default());
    (
        client,
        Watched::new(server, activity.clone(), limits),
        activity,
    )
}

/// The next read of the agent's side, bounded by [`WAIT`].
async fn read(watched: &mut Watched) -> io::Result<usize> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, watched.read(&mut buf))
        .await
        .expect("the read ends within WAIT")
}

/// Everything the client reads until the agent's side is closed.
async fn said(client: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut got))
        .await
        .expect("closed within WAIT")
        .expect("no error");
    got
}

/// Whether a read of the agent's side is still pending after [`LONGER`].
async fn still_pending(watched: &mut Watched) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LONGER, watched.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_without_an_answer() {
    let (mut client, mut watched, _) = pair().await;
    let err = read(&mut watched).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    drop(watched);
    assert_eq!(said(&mut client).await, b"");
}

#[tokio::test]
async fn a_half_sent_head_reads_408_then_the_close() {
    let (mut client, mut watched, _) = pair().await;
    client
        .write_all(b"POST /api/chat HTTP/1.1\r\n")
        .await
        .unwrap();
    assert!(read(&mut watched).await.unwrap() > 0);
    let err = read(&mut watched).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    drop(watched);
    assert_eq!(said(&mut client).await, TIMED_OUT);
}

#[tokio::test]
async fn no_clock_runs_while_a_request_is_served_and_the_idle_clock_starts_when_it_ends() {
    let (mut client, mut watched, activity) = pair().await;
    activity.started.fetch_add(1, Relaxed);
    assert!(still_pending(&mut watched).await, "timed while serving");
    // The answer is done: its finish wakes the pending read, and the keep-alive clock runs.
    let reading = tokio::spawn(async move { (read(&mut watched).await, watched) });
    drop(Finish(activity));
    let (result, watched) = reading.await.unwrap();
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    drop(watched);
    assert_eq!(said(&mut client).await, b"", "idle: closed without a word");
}

#[tokio::test]
async fn no_clock_runs_while_an_answers_last_bytes_wait_for_the_client() {
    let (mut client, mut watched, activity) = pair().await;
    activity.started.fetch_add(1, Relaxed);
    drop(Finish(activity)); // the body is done; its tail is still to be written
    let tail = vec![b'x'; 64 << 20];
    let blocked = tokio::time::timeout(LONGER, watched.write_all(&tail)).await;
    assert!(blocked.is_err(), "64 MiB fit in the socket buffers");
    assert!(watched.write_blocked);
    assert!(still_pending(&mut watched).await, "timed while delivering");
    // The client reads; once the writes move again, the keep-alive clock runs.
    let drain = tokio::spawn(async move { said(&mut client).await.len() });
    tokio::time::timeout(WAIT, watched.write_all(b"end"))
        .await
        .expect("the client reads")
        .unwrap();
    assert!(!watched.write_blocked);
    let err = read(&mut watched).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    drop(watched);
    assert!(drain.await.unwrap() > 3);
}
