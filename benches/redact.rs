//! The cost of redaction, which every log line and every line the CLI prints passes through:
//! a typical log line without secrets, one with a URL and a secret-looking field, a JSON log
//! line, the 2,000-line output of a big `lookout check --json`, and that output as one JSON line
//! written the way serde writes it (thousands of small writes through the CLI's redacting
//! `Writer`, which must stay linear in the line's length).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use std::io::Write as _;

use lookout::redact::{Writer, redact_with};

fn bench(c: &mut Criterion) {
    let secrets = [
        "apitoken-5f1c2e9a7b3d4c6e",
        "regpass-Zx9q2w3e4r5t",
        "whsecret-0a1b2c3d4e5f",
    ];
    let plain = "2026-12-01T10:30:56.786047Z  WARN lookout::telemetry: check failed event=\"check_finished\" service=app result=\"failed\" duration_ms=9";
    let with_url = "2026-12-01T10:30:56.786047Z  WARN lookout::telemetry: webhook delivery failed endpoint=https://hooks.slack.com/… error=\"POST https://user:pw@example.com/hook?token=abc failed\" password=hunter2";
    let json = r#"{"timestamp":"2026-12-01T10:30:56.786047Z","level":"WARN","fields":{"message":"check failed","error":"registry 127.0.0.1:5000, repository team/app: GET https://127.0.0.1:5000/v2/team/app/tags/list?n=1000&last=1.2 failed: HTTP 503"},"target":"lookout::engine"}"#;
    let big: String = (0..2000)
        .map(|i| format!("{{\"service\":\"svc{i}\",\"running\":\"registry.example:5000/team/app{i}:1.2.{i}\",\"candidate\":null,\"reason\":\"up to date\"}}\n"))
        .collect();
    let mut group = c.benchmark_group("redact");
    group.bench_function("plain log line", |b| {
        b.iter(|| redact_with(black_box(plain), &secrets).len())
    });
    group.bench_function("log line with URL and password", |b| {
        b.iter(|| redact_with(black_box(with_url), &secrets).len())
    });
    group.bench_function("JSON log line", |b| {
        b.iter(|| redact_with(black_box(json), &secrets).len())
    });
    group.bench_function("2000-line check --json", |b| {
        b.iter(|| redact_with(black_box(&big), &secrets).len())
    });
    let records: Vec<serde_json::Value> = (0..2000)
        .map(|i| serde_json::json!({"service": format!("svc{i}"), "running": format!("registry.example:5000/team/app{i}:1.2.{i}"), "candidate": null, "reason": "up to date"}))
        .collect();
    group.bench_function("2000 services as one JSON line through Writer", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out);
            serde_json::to_writer(&mut w, black_box(&records)).unwrap();
            w.flush().unwrap();
            drop(w);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
