//! Which content types are worth compressing.

/// The default content-type rule, applied to a media type's essence
/// (`type/subtype`, lowercase, no parameters).
///
/// In: `text/*` (except `text/event-stream`), JSON, JavaScript, XML and
/// anything `+json`/`+xml` (SVG, Atom, RSS, problem details…), NDJSON,
/// WebAssembly, form data, YAML, TOML, uncompressed fonts (TTF, OTF,
/// EOT), icons and bitmaps. Out: other images, audio, video, archives,
/// WOFF/WOFF2 (already compressed), gRPC, `text/event-stream`, and types this
/// list doesn't know. The layer can switch gRPC and event streams back on
/// ([`CompressionLayer::compress_grpc`](super::CompressionLayer::compress_grpc),
/// [`compress_event_stream`](super::CompressionLayer::compress_event_stream)).
///
/// ```
/// use tower_perf::compression::default_compressible;
///
/// assert!(default_compressible("application/json"));
/// assert!(default_compressible("application/vnd.api+json"));
/// assert!(default_compressible("image/svg+xml"));
/// assert!(!default_compressible("image/png"));
/// assert!(!default_compressible("font/woff2"));
/// assert!(!default_compressible("text/event-stream"));
/// ```
pub fn default_compressible(essence: &str) -> bool {
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    if is_grpc(essence) {
        return false;
    }
    if sub.ends_with("+json") || sub.ends_with("+xml") {
        return true;
    }
    match ty {
        "text" => sub != "event-stream",
        "application" => matches!(
            sub,
            "json"
                | "javascript"
                | "ecmascript"
                | "x-javascript"
                | "xml"
                | "wasm"
                | "x-ndjson"
                | "ndjson"
                | "jsonl"
                | "x-www-form-urlencoded"
                | "graphql"
                | "yaml"
                | "x-yaml"
                | "toml"
                | "x-sh"
                | "sql"
                | "rtf"
                | "postscript"
                | "x-tar"
                | "vnd.ms-fontobject"
                | "x-font-ttf"
                | "x-font-otf"
                | "font-sfnt"
                | "x-httpd-php"
        ),
        "image" => matches!(sub, "x-icon" | "vnd.microsoft.icon" | "bmp" | "x-ms-bmp"),
        "font" => matches!(sub, "ttf" | "otf" | "collection" | "sfnt"),
        _ => false,
    }
}

/// Longest essence read; longer ones are not compressed (no registered
/// media type comes close).
const ESSENCE_MAX: usize = 127;

/// A lowercased `type/subtype`, on the stack: read for every response, so
/// it allocates nothing.
pub(crate) struct Essence {
    buf: [u8; ESSENCE_MAX],
    len: usize,
}

impl std::ops::Deref for Essence {
    type Target = str;
    fn deref(&self) -> &str {
        // Only tchar bytes (ASCII) are ever copied in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// The lowercase essence of a Content-Type value; `None` when it isn't
/// `type/subtype` of tokens, or is longer than 127 bytes.
pub(crate) fn essence(content_type: &[u8]) -> Option<Essence> {
    let main = content_type.split(|&b| b == b';').next()?;
    let main = crate::headers::trim_ows(main);
    let slash = main.iter().position(|&b| b == b'/')?;
    let (ty, sub) = (&main[..slash], &main[slash + 1..]);
    let valid = |p: &[u8]| !p.is_empty() && p.iter().all(|&b| crate::headers::is_tchar(b));
    if !valid(ty) || !valid(sub) || main.len() > ESSENCE_MAX {
        return None;
    }
    let mut e = Essence {
        buf: [0; ESSENCE_MAX],
        len: main.len(),
    };
    for (d, s) in e.buf.iter_mut().zip(main) {
        *d = s.to_ascii_lowercase();
    }
    Some(e)
}

/// Whether this essence is gRPC (`application/grpc`, `application/grpc+proto`…).
pub(crate) fn is_grpc(essence: &str) -> bool {
    essence == "application/grpc"
        || essence.starts_with("application/grpc+")
        || essence.starts_with("application/grpc-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essences() {
        assert_eq!(
            essence(b"Application/JSON; charset=utf-8").as_deref(),
            Some("application/json")
        );
        assert_eq!(essence(b" text/html ").as_deref(), Some("text/html"));
        for bad in [
            &b""[..],
            b"text",
            b"/json",
            b"text/",
            b"te xt/html",
            b"\xff/x",
            b";",
        ] {
            assert!(essence(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Longer than any real media type: not read (and never compressed).
        let long = format!("application/{}", "x".repeat(200));
        assert!(essence(long.as_bytes()).is_none());
        let max = format!("a/{}", "x".repeat(ESSENCE_MAX - 2));
        assert_eq!(essence(max.as_bytes()).as_deref(), Some(max.as_str()));
    }

    #[test]
    fn rules() {
        for yes in [
            "text/html",
            "text/plain",
            "text/css",
            "text/javascript",
            "text/csv",
            "application/json",
            "application/problem+json",
            "application/atom+xml",
            "application/javascript",
            "application/x-ndjson",
            "application/wasm",
            "image/svg+xml",
            "font/ttf",
            "image/x-icon",
        ] {
            assert!(default_compressible(yes), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "image/avif",
            "audio/mpeg",
            "video/mp4",
            "application/zip",
            "application/gzip",
            "application/x-7z-compressed",
            "font/woff",
            "font/woff2",
            "application/octet-stream",
            "text/event-stream",
            "application/grpc",
            "application/grpc-web+json",
            "multipart/form-data",
            "application/pdf",
            "nonsense",
        ] {
            assert!(!default_compressible(no), "{no}");
        }
        assert!(
            is_grpc("application/grpc")
                && is_grpc("application/grpc+proto")
                && is_grpc("application/grpc-web")
        );
        assert!(!is_grpc("application/json"));
    }
}
