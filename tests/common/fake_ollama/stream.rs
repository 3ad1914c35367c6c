//! The shared core of every answer: the directives `[[delay]]`, `[[first_delay]]`,
//! `[[error_after]]`, `[[cut_after]]`, `[[hang]]` and `[[split]]` applied to a sequence of lines,
//! either streamed ([`start_stream`]) or answered in one piece ([`hold`]). The dialects only say
//! what the lines are ([`Frames`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{header, Response, StatusCode};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::http::{full, BodyKind, FakeBody, Msg, Resp};
use super::{wait_shutdown, BoxError, Directives, Inner};

/// The lines of one stream, framed by a dialect.
pub(super) struct Frames {
    /// Content type of the 200.
    pub(super) content_type: &'static str,
    /// Content lines (one per token / progress status).
    pub(super) content: Vec<Bytes>,
    /// Lines after the content (done line; or finish chunk, usage chunk, [DONE]).
    pub(super) tail: Vec<Bytes>,
    /// (index in `tail`, prompt tokens, eval tokens) credited to the stats just before that line.
    pub(super) credit: Option<(usize, u64, u64)>,
    /// Line sent by `[[error_after:K]]` (K > 0).
    pub(super) error_line: Bytes,
    /// Content type and body of the 500 sent by `[[error_after:0]]`.
    pub(super) early_error: (&'static str, Bytes),
}

/// The client went away.
struct Gone;

/// Streams `frames` as the directives `d` say, from a task of its own, which holds `slot` (a
/// parallel slot of the model) until it ends. The response (headers included) is returned once
/// the first line is ready, as Ollama sends nothing before it; an error before the first line
/// becomes a whole error response.
pub(super) async fn start_stream(
    inner: &Arc<Inner>,
    frames: Frames,
    d: Directives,
    slot: Option<OwnedSemaphorePermit>,
) -> Result<Resp, BoxError> {
    let ct = frames.content_type;
    let (tx, mut rx) = mpsc::channel(1);
    let inner2 = inner.clone();
    let stop = inner.shutdown.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let shut = tokio::select! {
            _ = wait_shutdown(stop) => true,
            r = drive(&inner2, &frames, &d, &tx) => {
                if r.is_err() {
                    inner2.gone();
                }
                false
            }
        };
        if shut {
            // Never end the body cleanly on shutdown: abort it, or leave it pending until the
            // connection is closed.
            let _ = tx.try_send(Msg::Cut);
            tx.closed().await;
        }
    });
    let first = match rx.recv().await {
        Some(Msg::Data(b)) => Some(b),
        Some(Msg::Start) => None,
        Some(Msg::EarlyError(status, ct, body)) => return Ok(full(status, Some(ct), body)),
        Some(Msg::Cut) | None => return Err("fake ollama: connection cut".into()),
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ct)
        .body(FakeBody(BodyKind::Chan { first, rx }))
        .expect("response"))
}

async fn pause(tx: &mpsc::Sender<Msg>, ms: u64) -> Result<(), Gone> {
    if ms == 0 {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        _ = tx.closed() => Err(Gone),
    }
}

/// Sends one line: one body frame, or three (`[[split]]`) cut mid-line, 2 ms apart.
async fn send_line(tx: &mpsc::Sender<Msg>, line: Bytes, split: bool) -> Result<(), Gone> {
    if !split || line.len() < 3 {
        return tx.send(Msg::Data(line)).await.map_err(|_| Gone);
    }
    let a = line.len() / 3;
    let b = 2 * line.len() / 3;
    let pieces = [line.slice(..a), line.slice(a..b), line.slice(b..)];
    for (i, piece) in pieces.into_iter().enumerate() {
        if i > 0 {
            pause(tx, 2).await?;
        }
        tx.send(Msg::Data(piece)).await.map_err(|_| Gone)?;
    }
    Ok(())
}

/// The content lines, each after its delay, then the tail; or the error line / cut / hang the
/// directives ask for instead.
async fn drive(
    inner: &Inner,
    frames: &Frames,
    d: &Directives,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), Gone> {
    if d.hang {
        tx.send(Msg::Start).await.map_err(|_| Gone)?;
        tx.closed().await;
        return Err(Gone);
    }
    let n = frames.content.len();
    let err_at = d.error_after.map(|k| k.min(n));
    let cut_at = d.cut_after.map(|k| k.min(n));
    for i in 0..=n {
        let wait = if i == 0 {
            d.first_delay_ms + d.delay_ms
        } else {
            d.delay_ms
        };
        pause(tx, wait).await?;
        if err_at == Some(i) {
            if i == 0 {
                let (ct, body) = frames.early_error.clone();
                let _ = tx
                    .send(Msg::EarlyError(StatusCode::INTERNAL_SERVER_ERROR, ct, body))
                    .await;
                return Ok(());
            }
            return send_line(tx, frames.error_line.clone(), d.split).await;
        }
        if cut_at == Some(i) {
            if i > 0 {
                // Let the lines already sent reach the socket before the abort.
                pause(tx, 5).await?;
            }
            let _ = tx.send(Msg::Cut).await;
            return Ok(());
        }
        if i < n {
            send_line(tx, frames.content[i].clone(), d.split).await?;
            continue;
        }
        if d.gate {
            let mut gate = inner.gate.subscribe();
            tokio::select! {
                _ = gate.wait_for(|open| *open) => {}
                _ = tx.closed() => return Err(Gone),
            }
        }
        send_tail(inner, frames, d, tx).await?;
    }
    Ok(())
}

/// The tail lines, crediting the token counts just before the line that carries them (and
/// taking them back if the client is gone).
async fn send_tail(
    inner: &Inner,
    frames: &Frames,
    d: &Directives,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), Gone> {
    for (j, line) in frames.tail.iter().enumerate() {
        match frames.credit {
            Some((at, p, e)) if at == j => {
                inner.credit(p, e);
                if let Err(g) = send_line(tx, line.clone(), d.split).await {
                    inner.uncredit(p, e);
                    return Err(g);
                }
            }
            _ => send_line(tx, line.clone(), d.split).await?,
        }
    }
    Ok(())
}

/// What a reply answered in one piece turns out to be, once [`hold`] has waited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Whole {
    /// The normal reply.
    Reply,
    /// The 500 of `[[error_after]]`.
    ModelError,
}

/// The directives for a reply that is not streamed but would have had `lines` lines: sleeps as
/// long as the stream would have taken, never answers on `[[hang]]`, and counts a disconnect if
/// the client leaves meanwhile. Then `[[cut_after]]` is an `Err` (the connection is closed without
/// a response) and `[[error_after]]` is [`Whole::ModelError`].
pub(super) async fn hold(inner: &Inner, d: &Directives, lines: u64) -> Result<Whole, BoxError> {
    let guard = GoneGuard::new(inner);
    if d.hang {
        std::future::pending::<()>().await;
    }
    let wait = d.first_delay_ms + d.delay_ms * lines;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    guard.disarm();
    if d.cut_after.is_some() {
        return Err("fake ollama: connection cut".into());
    }
    if d.error_after.is_some() {
        return Ok(Whole::ModelError);
    }
    Ok(Whole::Reply)
}

/// Counts a disconnect if dropped while armed (the request future was dropped by hyper because
/// the client went away).
struct GoneGuard<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl<'a> GoneGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        GoneGuard { inner, armed: true }
    }
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GoneGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.gone();
        }
    }
}
