//! Query cache keys: a readable name, its namespace, and the parameters
//! hashed to a fixed size.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Hex digits of the parameters' digest in a key (128 bits of SHA-256).
const PARAMS_HEX: usize = 32;

/// A key of a [`QueryCache`](super::QueryCache) entry.
///
/// A key is a readable name, such as `user:42:orders`, optionally followed
/// by a digest of parameters. Its **namespace** is the name up to its first
/// `:` (`user` here; the whole name when it has none): statistics are kept
/// per namespace and [`Invalidate::Namespace`](super::Invalidate) drops
/// all of one. Prefix and pattern invalidations match the key's
/// [text](Self::as_str).
///
/// Parameters are serialized (JSON, with serde) and hashed with SHA-256 to
/// 128 bits, so a key is the name plus 33 bytes however large the
/// parameters are, the same in every process (the Redis tier shares it
/// between replicas), and two different parameter sets can't collide in
/// practice. Serialize parameters in a fixed order: a slice of pairs, a
/// struct or a `BTreeMap`, not a `HashMap` (whose order changes from one
/// process to the next).
///
/// ```
/// use tower_perf::query_cache::QueryKey;
///
/// let key = QueryKey::with_params("quotes", &[("symbol", "AAPL")]);
/// assert_eq!(key.namespace(), "quotes");
/// assert_eq!(key.as_str().len(), "quotes#".len() + 32);
/// assert_eq!(key, QueryKey::with_params("quotes", &[("symbol", "AAPL")]));
/// assert_ne!(key, QueryKey::with_params("quotes", &[("symbol", "MSFT")]));
///
/// let key = QueryKey::new("user:42:orders");
/// assert_eq!(key.namespace(), "user");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct QueryKey {
    text: Arc<str>,
    /// False for parameters that could not be serialized: such a key is
    /// never looked up or stored (the loader always runs).
    cacheable: bool,
}

/// A name as it goes into a key's text: `%` and `#` escaped (`%25`,
/// `%23`), so that no name reads as another name's parameters.
fn escape_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['#', '%']) {
        name.replace('%', "%25").replace('#', "%23").into()
    } else {
        name.into()
    }
}

impl QueryKey {
    /// The key named `name`, without parameters. A `#` or `%` in `name`
    /// is escaped in the key's text (`%23`, `%25`): only
    /// [`with_params`](Self::with_params) makes the `#digest` part.
    ///
    /// Build names from what the application chooses (a route, an id it
    /// parsed); what a client sends verbatim belongs in the parameters,
    /// whose digest no client can forge.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self {
            text: Arc::from(escape_name(name.as_ref())),
            cacheable: true,
        }
    }

    /// A key whose text is `text`, as it was made (a key received from
    /// another replica).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_text(text: &str) -> Self {
        Self {
            text: Arc::from(text),
            cacheable: true,
        }
    }

    /// The key named `name` for `params` (any serializable value), hashed.
    ///
    /// Parameters whose serialization fails (a map whose keys are not
    /// strings, say) make a key that is never cached: its loader always
    /// runs, and the first such key logs a warning. Use
    /// [`try_with_params`](Self::try_with_params) to get the error.
    pub fn with_params<P: Serialize + ?Sized>(name: impl AsRef<str>, params: &P) -> Self {
        Self::try_with_params(name.as_ref(), params).unwrap_or_else(|e| {
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    name = name.as_ref(),
                    error = %e,
                    "tower-perf query cache: parameters that can't be serialized; such keys are never cached"
                );
            }
            Self {
                text: Arc::from(format!("{}#!", escape_name(name.as_ref()))),
                cacheable: false,
            }
        })
    }

    /// The key named `name` for `params`, or why `params` can't be
    /// serialized.
    pub fn try_with_params<P: Serialize + ?Sized>(
        name: impl AsRef<str>,
        params: &P,
    ) -> Result<Self, serde_json::Error> {
        let mut hasher = Sha256::new();
        serde_json::to_writer(HashWriter(&mut hasher), params)?;
        let digest = hasher.finalize();
        let name = escape_name(name.as_ref());
        let mut text = String::with_capacity(name.len() + 1 + PARAMS_HEX);
        text.push_str(&name);
        text.push('#');
        for b in &digest[..PARAMS_HEX / 2] {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 15)]));
        }
        Ok(Self {
            text: Arc::from(text),
            cacheable: true,
        })
    }

    /// The key's text: its name (`#` and `%` escaped), then `#` and the
    /// parameters' digest if it has parameters.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether entries can be cached under this key (false when its
    /// parameters could not be serialized).
    pub fn is_cacheable(&self) -> bool {
        self.cacheable
    }

    /// The key's namespace: its name up to the first `:` (or `#`).
    pub fn namespace(&self) -> &str {
        namespace_of(&self.text)
    }
}

/// The namespace of a key's text.
pub(crate) fn namespace_of(text: &str) -> &str {
    let end = text.find([':', '#']).unwrap_or(text.len());
    &text[..end]
}

impl std::fmt::Debug for QueryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("QueryKey").field(&&*self.text).finish()
    }
}

impl std::fmt::Display for QueryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for QueryKey {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for QueryKey {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl From<&QueryKey> for QueryKey {
    fn from(key: &QueryKey) -> Self {
        key.clone()
    }
}

impl<P: Serialize + ?Sized> From<(&str, &P)> for QueryKey {
    fn from((name, params): (&str, &P)) -> Self {
        Self::with_params(name, params)
    }
}

/// Feeds serialized bytes straight into the hasher (nothing buffered).
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sha256('[["symbol","AAPL"]]')`, its first 16 bytes in hex.
    const FIXED: &str = "1c1f64ce2f7e434956d4836c93fdba64";

    #[test]
    fn namespaces_are_the_first_segment() {
        assert_eq!(QueryKey::new("user:42:orders").namespace(), "user");
        assert_eq!(QueryKey::new("items").namespace(), "items");
        assert_eq!(QueryKey::with_params("items", &1).namespace(), "items");
        assert_eq!(QueryKey::new("").namespace(), "");
    }

    #[test]
    fn parameters_are_hashed_to_a_fixed_size_and_distinguished() {
        let long = "x".repeat(1 << 20);
        let a = QueryKey::with_params("q", &[("p", long.as_str())]);
        assert_eq!(a.as_str().len(), 2 + PARAMS_HEX);
        // The digest covers the encoding, not a concatenation: no two
        // parameter lists that read alike collide.
        let b = QueryKey::with_params("q", &[("ab", "c")]);
        let c = QueryKey::with_params("q", &[("a", "bc")]);
        assert_ne!(b, c);
        assert_eq!(
            QueryKey::with_params("quotes", &[("symbol", "AAPL")]).as_str(),
            QueryKey::from(("quotes", &[("symbol", "AAPL")])).as_str()
        );
        // Stable across processes and versions: SHA-256 of the JSON
        // `[["symbol","AAPL"]]`, its first 16 bytes.
        assert_eq!(
            QueryKey::with_params("quotes", &[("symbol", "AAPL")]).as_str(),
            format!("quotes#{}", FIXED)
        );
    }

    #[test]
    fn a_name_never_reads_as_parameters() {
        let hashed = QueryKey::with_params("quotes", &[("symbol", "AAPL")]);
        let forged = QueryKey::new(hashed.as_str());
        assert_ne!(forged, hashed);
        assert_eq!(forged.as_str(), format!("quotes%23{FIXED}"));
        assert_eq!(QueryKey::new("a%23b").as_str(), "a%2523b");
        assert_eq!(QueryKey::from("x#y".to_owned()).as_str(), "x%23y");
        assert_eq!(forged.namespace(), "quotes%23".to_owned() + FIXED);
    }

    #[test]
    fn unserializable_parameters_make_a_key_that_is_never_cached() {
        let mut bad = std::collections::BTreeMap::new();
        bad.insert((1, 2), "tuple keys are not JSON object keys");
        assert!(QueryKey::try_with_params("q", &bad).is_err());
        let key = QueryKey::with_params("q", &bad);
        assert!(!key.is_cacheable());
        assert_ne!(key, QueryKey::new("q#!"));
        assert!(QueryKey::with_params("q", &1).is_cacheable());
    }
}
