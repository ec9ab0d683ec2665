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
}

impl QueryKey {
    /// The key named `name`, without parameters.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self {
            text: Arc::from(name.as_ref()),
        }
    }

    /// The key named `name` for `params` (any serializable value), hashed.
    pub fn with_params<P: Serialize + ?Sized>(name: impl AsRef<str>, params: &P) -> Self {
        let mut hasher = Sha256::new();
        // Serializing into the hasher cannot fail for the writer's sake;
        // a value whose `Serialize` fails (a map with non-string keys)
        // hashes what was written before, plus a marker.
        if serde_json::to_writer(HashWriter(&mut hasher), params).is_err() {
            hasher.update(b"\0unserializable");
        }
        let digest = hasher.finalize();
        let name = name.as_ref();
        let mut text = String::with_capacity(name.len() + 1 + PARAMS_HEX);
        text.push_str(name);
        text.push('#');
        for b in &digest[..PARAMS_HEX / 2] {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 15)]));
        }
        Self {
            text: Arc::from(text),
        }
    }

    /// The key's text: its name, then `#` and the parameters' digest if it
    /// has parameters.
    pub fn as_str(&self) -> &str {
        &self.text
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
        Self {
            text: Arc::from(name),
        }
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
        // Stable across processes: a fixed digest.
        assert_eq!(
            QueryKey::with_params("quotes", &[("symbol", "AAPL")]).as_str(),
            QueryKey::from(("quotes", &[("symbol", "AAPL")])).as_str()
        );
    }
}
