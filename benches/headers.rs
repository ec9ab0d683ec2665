//! Every header parser at 300, 3,000 and 30,000 list elements: the cost
//! per element must stay flat (linear time, bounded retention).
//!
//! - `cache-control/extensions`: `ext0=1, ext1=1, …` (unknown directives).
//! - `cache-control/no-cache-lists`: `no-cache="f0", no-cache="f1", …`
//!   (qualified lists that merge).
//! - `cache-control/no-cache-fields`: one `no-cache="f0, f1, …"` list.
//! - `accept-encoding`: known, unknown, weighted and `*` codings.
//! - `if-none-match`: `"v0", W/"v1", …` parsed and evaluated against a tag
//!   that is not listed.
//! - `x-forwarded-for` / `forwarded`: hops inside the trusted network, so
//!   the walk from the right never stops early, read by the rate limiter
//!   (`KeySource::client_ip`) through the public `RateLimit` service
//!   around a handler that does nothing.
//! - `use-as-dictionary` (with `compression`): a `match-dest` inner list
//!   and unknown members with inner lists and parameters (RFC 9842 over
//!   Structured Fields).
//! - `range` (with `cache`): `bytes=0-5, 10-15, …` read by `ByteRanges`
//!   (the cache answers several ranges whole, so it keeps the first and a
//!   flag). `range/one` compares one range read and resolved against a
//!   length with `http-range-header` (what tower-http's `ServeDir` uses),
//!   and the summary times that crate on the lists too: its `validate`
//!   compares every pair of ranges.
//! - `prefer`: `p0="a, b; c";q=1, p1=…` (preferences with quoted
//!   values and parameters), then `respond-async` (RFC 7240): the whole
//!   field is read, nothing kept but two values.
//! - `date`: the three HTTP date formats (fixed size), one read
//!   leniently, and a 100 KB value refused.
//!
//! After criterion's groups a summary prints nanoseconds per element at
//! each size (best of several batches) and the 30,000/3,000 ratio, which
//! must stay under 15.
//!
//! Run: `cargo bench --bench headers` (everything), or
//! `cargo bench --bench headers -- summary` (the summary only: the filter
//! matches no criterion benchmark).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
#[path = "common/best_of.rs"]
mod best_of;

use best_of::time_per_call;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::headers::{
    AcceptEncoding, CacheControl, EntityTag, EntityTagList, HttpDate, Prefer,
};
use tower_perf::rate_limit::{KeySource, PeerAddr, Quota, RateLimitLayer, RateRule};

const SIZES: [usize; 3] = [300, 3_000, 30_000];

/// What a case parses, built once per size.
enum Input {
    Bytes(Vec<u8>),
    Header(&'static str, HeaderValue),
}

struct Case {
    name: &'static str,
    build: fn(usize) -> Input,
}

fn list(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(", ")
}

/// `bytes=` and `n` disjoint ranges in ascending order.
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
fn ranges(n: usize) -> String {
    format!(
        "bytes={}",
        list(n, |i| format!("{}-{}", i * 10, i * 10 + 5))
    )
}

fn hop(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn header(name: &'static str, value: String) -> Input {
    Input::Header(
        name,
        HeaderValue::from_str(&value).expect("bench input is a valid header value"),
    )
}

const CASES: &[Case] = &[
    Case {
        name: "cache-control/extensions",
        build: |n| Input::Bytes(list(n, |i| format!("ext{i}=1")).into_bytes()),
    },
    Case {
        name: "cache-control/no-cache-lists",
        build: |n| Input::Bytes(list(n, |i| format!("no-cache=\"f{i}\"")).into_bytes()),
    },
    Case {
        name: "cache-control/no-cache-fields",
        build: |n| {
            Input::Bytes(format!("no-cache=\"{}\"", list(n, |i| format!("f{i}"))).into_bytes())
        },
    },
    Case {
        name: "accept-encoding",
        build: |n| {
            Input::Bytes(
                list(n, |i| match i % 5 {
                    0 => "gzip;q=0.5".to_owned(),
                    1 => format!("x-enc-{i};q=0.1"),
                    2 => "br".to_owned(),
                    3 => "deflate;q=0".to_owned(),
                    _ => "*;q=0.01".to_owned(),
                })
                .into_bytes(),
            )
        },
    },
    Case {
        name: "if-none-match",
        build: |n| {
            Input::Bytes(
                list(n, |i| {
                    if i % 2 == 0 {
                        format!("\"v{i}\"")
                    } else {
                        format!("W/\"v{i}\"")
                    }
                })
                .into_bytes(),
            )
        },
    },
    Case {
        name: "prefer",
        build: |n| {
            Input::Bytes(
                format!(
                    "{}, respond-async",
                    list(n, |i| format!("p{i}=\"a, b; c\";q=1"))
                )
                .into_bytes(),
            )
        },
    },
    #[cfg(feature = "compression")]
    Case {
        name: "use-as-dictionary",
        build: |n| {
            Input::Bytes(
                format!(
                    "match=\"/app.*.js\", match-dest=({}), {}",
                    vec!["\"script\""; n / 2].join(" "),
                    list(n / 2, |i| format!("k{i}=(\"v\" tok 1);p=?1"))
                )
                .into_bytes(),
            )
        },
    },
    #[cfg(feature = "cache")]
    Case {
        name: "range",
        build: |n| Input::Bytes(ranges(n).into_bytes()),
    },
    Case {
        name: "x-forwarded-for",
        build: |n| header("x-forwarded-for", list(n, hop)),
    },
    Case {
        name: "forwarded",
        build: |n| {
            header(
                "forwarded",
                list(n, |i| format!("for={};proto=https", hop(i))),
            )
        },
    },
];

type Body = Empty<Bytes>;

/// The rate limiter with a client-IP key behind `10.0.0.0/8`, around a
/// handler that does nothing; every request is allowed.
fn limiter() -> impl Service<Request<Body>, Error = Infallible> + Clone {
    let layer = RateLimitLayer::new()
        .rule(
            RateRule::new("bench", Quota::per_second(1_000_000_000))
                .key(KeySource::client_ip(["10.0.0.0/8"]).expect("a valid CIDR")),
        )
        .headers(false);
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::new()))
        }))
}

/// One parse (or one request through the limiter) of `input`.
fn run<S>(case: &str, input: &Input, svc: &S)
where
    S: Service<Request<Body>, Error = Infallible> + Clone,
{
    let current = EntityTag::strong("current").expect("a valid tag");
    match (case, input) {
        ("accept-encoding", Input::Bytes(b)) => {
            black_box(AcceptEncoding::parse(black_box(b)));
        }
        #[cfg(feature = "compression")]
        ("use-as-dictionary", Input::Bytes(b)) => {
            let d = tower_perf::headers::UseAsDictionary::parse(black_box(b));
            assert!(d.is_ok_and(|d| d.destinations().len() <= 32));
        }
        #[cfg(feature = "cache")]
        ("range", Input::Bytes(b)) => {
            let r = tower_perf::headers::ByteRanges::parse(black_box(b));
            assert!(r.is_ok_and(|r| r.is_several()));
        }
        ("prefer", Input::Bytes(b)) => {
            assert!(Prefer::parse(black_box(b)).respond_async());
        }
        ("if-none-match", Input::Bytes(b)) => {
            // A list too long to keep is an error, which callers read as
            // "no usable If-None-Match": the full response, never a 304.
            let passes = EntityTagList::parse(black_box(b))
                .map_or(true, |l| l.if_none_match_passes(Some(&current)));
            assert!(passes);
        }
        (_, Input::Bytes(b)) => {
            black_box(CacheControl::parse(black_box(b)));
        }
        (_, Input::Header(name, value)) => {
            let mut req = Request::get("/").body(Body::new()).expect("a request");
            req.headers_mut().insert(*name, value.clone());
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::from(([10, 0, 0, 1], 4000))));
            let res = svc.clone().oneshot(req).now_or_never();
            assert!(matches!(res, Some(Ok(_))), "the limiter answers at once");
        }
    }
}

fn parsers(c: &mut Criterion) {
    let svc = limiter();
    for case in CASES {
        let mut group = c.benchmark_group(case.name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for n in SIZES {
            let input = (case.build)(n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| run(case.name, &input, &svc))
            });
        }
        group.finish();
    }
    #[cfg(feature = "cache")]
    {
        let mut group = c.benchmark_group("range/one");
        for value in ["bytes=500-999", "bytes=-500"] {
            group.bench_function(format!("tower-perf {value}"), |b| {
                b.iter(|| {
                    let r = tower_perf::headers::ByteRanges::parse(black_box(value.as_bytes()));
                    black_box(r.ok().and_then(|r| r.first().resolve(black_box(10_000))))
                })
            });
            group.bench_function(format!("http-range-header {value}"), |b| {
                b.iter(|| {
                    let r = http_range_header::parse_range_header(black_box(value));
                    black_box(r.ok().and_then(|r| r.validate(black_box(10_000)).ok()))
                })
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("date");
    for (name, value) in [
        ("imf-fixdate", &b"Sun, 06 Nov 1994 08:49:37 GMT"[..]),
        ("rfc850", b"Sunday, 06-Nov-94 08:49:37 GMT"),
        ("asctime", b"Sun Nov  6 08:49:37 1994"),
        // Read leniently (RFC 9110 §5.6.7): rewritten, then checked.
        ("lenient", b"mon, 06 NOV 1994 08:49:37 gmt"),
    ] {
        group.bench_function(name, |b| b.iter(|| HttpDate::parse(black_box(value))));
    }
    // Refused in bounded time however long the value.
    let long: Vec<u8> = [
        &b"Sun, 06 Nov 1994 08:49:37 GMT"[..],
        &[b' '; 100_000],
        b"x",
    ]
    .concat();
    group.bench_function("100 KB, refused", |b| {
        b.iter(|| HttpDate::parse(black_box(&long)))
    });
    group.finish();
}

fn summary(_: &mut Criterion) {
    let svc = limiter();
    println!();
    println!("ns per element (best batch mean)");
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>9}",
        "case", "300", "3,000", "30,000", "30k/3k"
    );
    let mut flat = true;
    for case in CASES {
        let per: Vec<f64> = SIZES
            .iter()
            .map(|&n| {
                let input = (case.build)(n);
                let t = time_per_call(|| run(case.name, &input, &svc));
                t.as_nanos() as f64 / n as f64
            })
            .collect();
        let ratio = per[2] / per[1];
        flat &= ratio <= 15.0;
        println!(
            "{:<32} {:>10.1} {:>10.1} {:>10.1} {:>8.2}x",
            case.name, per[0], per[1], per[2], ratio
        );
    }
    #[cfg(feature = "cache")]
    {
        // The peer on the same lists, parsed and validated against a
        // length as `ServeDir` does (it refuses more than 100 ranges only
        // from 1.0, which needs a newer Rust than this crate's).
        let per: Vec<f64> = [300, 3_000]
            .iter()
            .map(|&n| {
                let value = ranges(n);
                let t = time_per_call(|| {
                    let r = http_range_header::parse_range_header(black_box(&value));
                    black_box(r.ok().map(|r| r.validate(u64::MAX).is_ok()));
                });
                t.as_nanos() as f64 / n as f64
            })
            .collect();
        println!(
            "{:<32} {:>10.1} {:>10.1} {:>10} {:>8.2}x (3k/300)",
            "range: http-range-header",
            per[0],
            per[1],
            "-",
            per[1] / per[0]
        );
    }
    let date = time_per_call(|| {
        black_box(HttpDate::parse(black_box(b"Sun, 06 Nov 1994 08:49:37 GMT")).ok());
    });
    println!("date (imf-fixdate, one value): {} ns", date.as_nanos());
    println!(
        "30,000 within 15x of 3,000 per element: {}",
        if flat { "yes, every case" } else { "NO" }
    );
}

criterion_group!(benches, parsers, summary);
criterion_main!(benches);
