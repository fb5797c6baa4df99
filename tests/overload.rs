//! Overload: ten times what the model can compute. The excess is refused at
//! once with 429 and Retry-After, nobody waits past their timeout, the
//! queue stays within its bound, and cache hits keep being served.
//! Bounded: 1,280 requests, 192 at a time.

mod common;

use std::time::{Duration, Instant};

use common::{metric, temp_dir, TestServer};
use futures::StreamExt;
use infercache::config::ModelConfig;
use reqwest::StatusCode;
use serde_json::json;

const QUEUE: usize = 32;
const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_capacity_is_refused_promptly_and_hits_still_flow() {
    let minilm = ModelConfig {
        queue: QUEUE,
        max_inputs: QUEUE,
        ..common::minilm()
    };
    let dir = temp_dir();
    let server = TestServer::start(dir.path(), |a| {
        a.models = vec![minilm];
        a.request_timeout = Some(TIMEOUT.into());
    })
    .await;
    let c = server.client.clone();
    assert_eq!(
        c.put(server.url("/v1/kv/hot"))
            .body("hot value")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // Hits, concurrently with the flood.
    let hits = {
        let (c, url) = (c.clone(), server.url("/v1/kv/hot"));
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for _ in 0..300 {
                let t = Instant::now();
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                assert_eq!(r.headers()["x-cache-tier"], "memory");
                worst = worst.max(t.elapsed());
            }
            worst
        })
    };
    let depth_watch = {
        let (c, base) = (c.clone(), server.base.clone());
        tokio::spawn(async move {
            let mut deepest = 0.0f64;
            for _ in 0..50 {
                deepest = deepest
                    .max(metric(&c, &base, "infercache_queue_depth{model=\"minilm\"}").await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            deepest
        })
    };
    let flood = futures::stream::iter(0..1280)
        .map(|i| {
            let (c, url) = (c.clone(), server.url("/v1/embeddings"));
            async move {
                let text =
                    format!("unique sentence number {i} about nothing in particular, padded out");
                let t = Instant::now();
                let r = c
                    .post(url)
                    .json(&json!({"model": "minilm", "input": text}))
                    .send()
                    .await
                    .unwrap();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.status(), retry, t.elapsed())
            }
        })
        // More clients than the queue plus the two batches the batcher
        // holds (gathering, running): the excess must overflow.
        .buffer_unordered(192)
        .collect::<Vec<_>>()
        .await;
    let refused: Vec<_> = flood
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    let served = flood
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(refused.len() + served, flood.len(), "only 200 or 429");
    assert!(!refused.is_empty(), "the excess was refused");
    assert!(served > 0, "the model kept computing");
    assert!(refused
        .iter()
        .all(|(_, retry, _)| retry.as_deref() == Some("1")));
    let slowest = flood.iter().map(|(_, _, t)| *t).max().unwrap();
    assert!(slowest < TIMEOUT, "a request waited {slowest:?}");
    let deepest = depth_watch.await.unwrap();
    assert!(deepest <= QUEUE as f64, "queue depth {deepest} > {QUEUE}");
    let worst_hit = hits.await.unwrap();
    assert!(worst_hit < TIMEOUT, "a hit waited {worst_hit:?}");
    server.stop().await;
}
