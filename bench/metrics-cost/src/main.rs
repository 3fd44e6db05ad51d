//! One way of counting a request per mode (see run.sh): plain atomics (what azimds does),
//! prometheus-client handles and label families, metrics handles and macros.
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

const BOUNDS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 10.0,
];

struct Plain {
    counts: Vec<AtomicU64>,
    buckets: [AtomicU64; 13],
    sum_ns: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].as_str();
    let n: u64 = args[2].parse().unwrap();
    let secs = [0.00003f64, 0.0002, 0.0009];
    match mode {
        "plain" => {
            let p = Plain {
                counts: (0..10000).map(|_| AtomicU64::new(0)).collect(),
                buckets: Default::default(),
                sum_ns: AtomicU64::new(0),
            };
            for i in 0..n {
                let idx = black_box((i % 7) as usize * 100 + 3);
                p.counts[idx].fetch_add(1, Ordering::Relaxed);
                let ns = black_box(30_000u64 + (i % 3) * 1000);
                let s = ns as f64 * 1e-9;
                let b = BOUNDS.iter().position(|b| s <= *b).unwrap_or(12);
                p.buckets[b].fetch_add(1, Ordering::Relaxed);
                p.sum_ns.fetch_add(ns, Ordering::Relaxed);
            }
            black_box(&p);
        }
        "pc-handles" => {
            use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
            let c: Vec<Counter> = (0..10000).map(|_| Counter::default()).collect();
            let h = Histogram::new(BOUNDS.iter().copied());
            for i in 0..n {
                let idx = black_box((i % 7) as usize * 100 + 3);
                c[idx].inc();
                h.observe(black_box(secs[(i % 3) as usize]));
            }
            black_box(&h);
        }
        "pc-family" => {
            use prometheus_client::metrics::{
                counter::Counter, family::Family, histogram::Histogram,
            };
            let c: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
            let h: Family<Vec<(&'static str, &'static str)>, Histogram> =
                Family::new_with_constructor(|| Histogram::new(BOUNDS.iter().copied()));
            let eps = ["instance", "token", "versions"];
            for i in 0..n {
                let ep = eps[(i % 3) as usize];
                let labels = vec![
                    ("endpoint", ep),
                    ("status", "200"),
                    ("api_version", "2021-02-01"),
                ];
                c.get_or_create(&labels).inc();
                h.get_or_create(&labels)
                    .observe(black_box(secs[(i % 3) as usize]));
            }
            black_box(&h);
        }
        "metrics-handles" => {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&BOUNDS)
                .unwrap()
                .build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                let c: Vec<metrics::Counter> = (0..1000)
                    .map(|i| metrics::counter!("req", "i" => i.to_string()))
                    .collect();
                let h = metrics::histogram!("lat");
                for i in 0..n {
                    let idx = black_box((i % 7) as usize * 100 + 3);
                    c[idx].increment(1);
                    h.record(black_box(secs[(i % 3) as usize]));
                }
            });
            black_box(handle.render());
        }
        "metrics-macro" => {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&BOUNDS)
                .unwrap()
                .build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                let eps = ["instance", "token", "versions"];
                for i in 0..n {
                    let ep = eps[(i % 3) as usize];
                    metrics::counter!("req", "endpoint" => ep, "status" => "200", "api_version" => "2021-02-01").increment(1);
                    metrics::histogram!("lat", "endpoint" => ep)
                        .record(black_box(secs[(i % 3) as usize]));
                }
            });
            black_box(handle.render());
        }
        _ => panic!(),
    }
}
