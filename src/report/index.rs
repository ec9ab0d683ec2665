//! `GET {base}/`: the endpoints this report serves, as an HTML page for a
//! browser and as JSON for anything else.

use http::{HeaderMap, StatusCode, header};
use serde::Serialize;

use super::body::{ReportBody, json, respond};
use super::service::Inner;

/// One endpoint of the index.
#[derive(Debug, Serialize)]
struct Entry {
    path: String,
    method: &'static str,
    description: &'static str,
}

#[derive(Debug, Serialize)]
struct Index {
    endpoints: Vec<Entry>,
}

impl Inner {
    /// The endpoints whose layer this report reads, each once.
    fn entries(&self) -> Vec<Entry> {
        let s = &self.sources;
        #[allow(unused_mut)]
        let mut rows: Vec<(&'static str, &'static str, &'static str, bool)> = vec![
            ("GET", "/dashboard", "the live dashboard (HTML)", true),
            (
                "GET",
                "/summary",
                "every layer's figures, the status and recommendations (JSON)",
                true,
            ),
            (
                "GET",
                "/history",
                "a point per interval: ?since=<ms since the epoch>, ?resolution=fine|coarse (JSON)",
                self.history.is_some(),
            ),
            ("GET", "/metrics", "Prometheus text of every layer", true),
        ];
        #[cfg(feature = "timing")]
        rows.extend([
            (
                "GET",
                "/profile/overview",
                "latency and errors per route (JSON)",
                s.timing.is_some(),
            ),
            (
                "GET",
                "/profile/slowest",
                "the routes with the highest p99 (JSON)",
                s.timing.is_some(),
            ),
            (
                "GET",
                "/profile/insights",
                "what stands out, with a recommendation (JSON)",
                s.timing.is_some(),
            ),
            (
                "GET",
                "/profile/slow-requests",
                "the last slow requests (JSON)",
                s.timing.is_some(),
            ),
        ]);
        #[cfg(feature = "cache")]
        rows.extend([
            (
                "GET",
                "/cache/stats",
                "the response cache's counters (JSON)",
                s.cache.is_some(),
            ),
            (
                "GET",
                "/cache/routes",
                "hit rates per route template (JSON)",
                s.cache.is_some(),
            ),
            (
                "GET",
                "/cache/queries",
                "the query cache's counters per namespace (JSON)",
                s.queries.is_some(),
            ),
            (
                "POST",
                "/cache/purge",
                "drop URLs, prefixes or tags (bearer token)",
                s.cache.is_some() && self.token.is_some(),
            ),
            (
                "POST",
                "/cache/clear",
                "drop every entry (bearer token)",
                s.cache.is_some() && self.token.is_some(),
            ),
        ]);
        #[cfg(feature = "compression")]
        rows.extend([
            (
                "GET",
                "/compression/stats",
                "responses and bytes per content coding (JSON)",
                s.compression.is_some(),
            ),
            (
                "GET",
                "/decompression/stats",
                "request bodies decoded and refused (JSON)",
                s.decompression.is_some(),
            ),
        ]);
        #[cfg(feature = "rate-limit")]
        rows.push((
            "GET",
            "/rate-limit/stats",
            "allowed and limited per policy, the most limited keys (JSON)",
            s.rate_limit.is_some(),
        ));
        #[cfg(feature = "tasks")]
        rows.push((
            "GET",
            "/tasks",
            "deferred requests and their monitors (JSON)",
            s.tasks.is_some(),
        ));
        let _ = s;
        rows.into_iter()
            .filter(|r| r.3)
            .map(|(method, path, description, _)| Entry {
                path: format!("{}{path}", self.base),
                method,
                description,
            })
            .collect()
    }

    /// The index: HTML when the client asks for it (a browser), else JSON.
    pub(super) fn index(&self, headers: &HeaderMap) -> http::Response<ReportBody> {
        let entries = self.entries();
        let html = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
        if !html {
            return json(StatusCode::OK, &Index { endpoints: entries });
        }
        let mut page = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>tower-perf</title><style>body{font:14px/1.5 system-ui,sans-serif;\
             margin:24px}td{padding:2px 12px 2px 0}code{font-size:13px}</style></head>\
             <body><h1>tower-perf</h1><table>\n",
        );
        for e in &entries {
            let link = if e.method == "GET" {
                format!("<a href=\"{0}\"><code>{0}</code></a>", escape(&e.path))
            } else {
                format!("<code>{}</code>", escape(&e.path))
            };
            page.push_str(&format!(
                "<tr><td>{}</td><td>{link}</td><td>{}</td></tr>\n",
                e.method,
                escape(e.description)
            ));
        }
        page.push_str("</table></body></html>\n");
        respond(StatusCode::OK, "text/html; charset=utf-8", page)
    }
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
