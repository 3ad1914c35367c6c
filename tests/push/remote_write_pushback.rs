//! Remote-write push against receivers that push back: Nightingale's pushgw answering 499 while
//! its write queues are full (retried, nothing lost), and a receiver answering 413 above a
//! size limit (the batch is resent in halves; a single series still too large is dropped).

use crate::common;

use common::receiver::{ReceivedRequest, Receiver, Script};
use common::{wait_until, WAIT};
use ollama_tap::push::proto::{Label, Sample, TimeSeries};
use ollama_tap::push::Writers;

use crate::writers::{
    fast, metric, opt, snapshot, stamps_by_series, writer, DROPPED, FAILED, RETRIES, SENT,
};

/// A writer with `batch` samples a request and room for 1000, retrying after 5 ms to 100 ms.
fn start(rx: &Receiver, batch: usize) -> Writers {
    Writers::start_with(&[writer(&rx.url())], &opt(batch, 1000), fast()).unwrap()
}

fn samples(r: &ReceivedRequest) -> usize {
    r.series.iter().map(TimeSeries::sample_count).sum()
}

#[tokio::test]
async fn an_n9e_receiver_answering_499_for_a_stretch_then_204_loses_nothing() {
    let rx = Receiver::start(Script::N9eQueueFull { n: 5 }).await;
    let w = start(&rx, 4);
    let mut enqueued = Vec::new();
    for ts in 1..=10 {
        let snap = snapshot(ts * 1000, 3);
        enqueued.extend(snap.clone());
        w.enqueue(snap);
        if ts == 1 {
            // The rest is queued while the first batch is pushed back.
            rx.wait_for_requests(1, WAIT).await;
        }
    }

    let got = rx.wait_for_accepted_series(30, WAIT).await;
    wait_until("counters", || metric(&w, SENT, "") == 30.0).await;
    // Every (label set, timestamp) enqueued arrived exactly once, in per-series order.
    assert_eq!(stamps_by_series(&got), stamps_by_series(&enqueued));
    assert_eq!(got.len(), enqueued.len(), "no duplicate");
    let requests = rx.received();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses[..6],
        [499, 499, 499, 499, 499, 204],
        "{statuses:?}"
    );
    for retry in &requests[1..6] {
        assert_eq!(retry.series[0], requests[0].series[0], "oldest first again");
    }
    assert_eq!(metric(&w, RETRIES, ""), 5.0);
    assert_eq!(metric(&w, FAILED, ""), 0.0);
    assert_eq!(metric(&w, DROPPED, ""), 0.0);
}

#[tokio::test]
async fn a_413_splits_the_batch_until_it_fits_and_every_sample_arrives_once() {
    let rx = Receiver::start(Script::MaxSamples(4)).await;
    let w = start(&rx, 16);
    let mut enqueued = Vec::new();
    for ts in 1..=5 {
        let snap = snapshot(ts, 10);
        enqueued.extend(snap.clone());
        w.enqueue(snap);
    }

    let got = rx.wait_for_accepted_series(50, WAIT).await;
    wait_until("counters", || metric(&w, SENT, "") == 50.0).await;
    assert_eq!(stamps_by_series(&got), stamps_by_series(&enqueued));
    assert_eq!(got.len(), 50, "no duplicate");
    let requests = rx.received();
    let too_large = requests.iter().filter(|r| r.status == 413).count();
    assert!(too_large > 0, "the limit was hit");
    for r in &requests {
        match r.status {
            413 => assert!(samples(r) > 4, "{} samples refused", samples(r)),
            204 => assert!(samples(r) <= 4, "{} samples accepted", samples(r)),
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(
        metric(&w, RETRIES, ""),
        too_large as f64,
        "each split is one retry"
    );
    assert_eq!(metric(&w, FAILED, ""), 0.0);
    assert_eq!(metric(&w, DROPPED, ""), 0.0);
}

#[tokio::test]
async fn a_single_series_above_the_limit_is_dropped_and_later_batches_flow() {
    let rx = Receiver::start(Script::MaxSamples(4)).await;
    let w = start(&rx, 16);
    let big = TimeSeries {
        labels: vec![Label::new("__name__", "ollama_tap_big")],
        samples: (1..=6)
            .map(|t| Sample {
                value: t as f64,
                timestamp: t,
            })
            .collect(),
    };
    w.enqueue(vec![big.clone()]);
    wait_until("the big series failed", || metric(&w, FAILED, "") == 6.0).await;
    let mut enqueued = Vec::new();
    for ts in 1..=3 {
        let snap = snapshot(ts, 3);
        enqueued.extend(snap.clone());
        w.enqueue(snap);
    }

    let got = rx.wait_for_accepted_series(9, WAIT).await;
    wait_until("counters", || metric(&w, SENT, "") == 9.0).await;
    assert_eq!(stamps_by_series(&got), stamps_by_series(&enqueued));
    let requests = rx.received();
    let with_big: Vec<&ReceivedRequest> = requests
        .iter()
        .filter(|r| r.series.contains(&big))
        .collect();
    assert!(!with_big.is_empty());
    assert!(with_big.iter().all(|r| r.status == 413), "never accepted");
    let first_ok = requests.iter().position(|r| r.status == 204).unwrap();
    assert!(
        requests[first_ok..]
            .iter()
            .all(|r| !r.series.contains(&big)),
        "a dropped series is never sent again"
    );
    assert_eq!(metric(&w, FAILED, ""), 6.0);
    assert_eq!(metric(&w, DROPPED, ""), 0.0);
}
