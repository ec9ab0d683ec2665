use std::sync::Arc;

use tower_layer::Layer;

use super::policy::{Policy, Rule};
use super::service::CacheControl;
use super::stats::CacheControlStats;

/// Whether and how the layer generates ETags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EtagMode {
    /// Never generate one (preconditions still use the handler's).
    Off,
    /// `"…"`: the hash covers every byte sent, so it is a strong validator.
    #[default]
    Strong,
    /// `W/"…"`, for applications that want to reserve strong validators.
    Weak,
}

/// Default for [`CacheControlLayer::max_hash_size`]: bodies up to 1 MiB of
/// known length are hashed.
pub const DEFAULT_MAX_HASH_SIZE: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) rules: Vec<Rule>,
    pub(crate) etags: EtagMode,
    pub(crate) max_hash_size: u64,
    pub(crate) preconditions: bool,
    pub(crate) probe_unsafe: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            etags: EtagMode::Strong,
            max_hash_size: DEFAULT_MAX_HASH_SIZE,
            preconditions: true,
            probe_unsafe: false,
        }
    }
}

/// Cache-Control policies by route, generated ETags and conditional
/// requests (304/412).
///
/// See the [module docs](crate::cache_control).
#[derive(Debug, Clone)]
pub struct CacheControlLayer {
    pub(crate) config: Arc<Config>,
    pub(crate) stats: CacheControlStats,
}

impl Default for CacheControlLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheControlLayer {
    /// No rules, strong ETags for bodies up to [`DEFAULT_MAX_HASH_SIZE`],
    /// preconditions evaluated.
    pub fn new() -> Self {
        Self {
            config: Arc::default(),
            stats: CacheControlStats::new(),
        }
    }

    /// Adds a rule: `pattern` (see [`Rule::new`]) gets `policy`. Rules are
    /// tried in the order they were added; the first that matches applies.
    ///
    /// # Panics
    ///
    /// When `pattern` can never match a request path (see [`Rule::new`]).
    pub fn route(self, pattern: &str, policy: Policy) -> Self {
        self.rule(Rule::new(pattern).policy(policy))
    }

    /// Adds a rule built with [`Rule`].
    ///
    /// # Panics
    ///
    /// When the rule's policy is a storable preset
    /// ([`static_assets`](Policy::static_assets), [`api`](Policy::api),
    /// [`monitoring`](Policy::monitoring)) that could never apply under the
    /// rule's [`methods`](Rule::methods) (none of them GET or HEAD) or
    /// [`statuses`](Rule::statuses) (none of them in
    /// [`Policy::CACHEABLE_STATUSES`]).
    pub fn rule(mut self, rule: Rule) -> Self {
        rule.assert_can_apply();
        Arc::make_mut(&mut self.config).rules.push(rule);
        self
    }

    /// Strong, weak or no generated ETags.
    pub fn etags(mut self, mode: EtagMode) -> Self {
        Arc::make_mut(&mut self.config).etags = mode;
        self
    }

    /// Bodies of known length up to this many bytes are hashed for an ETag
    /// (they are read whole before the response head is sent); larger or
    /// streamed bodies pass through untouched.
    pub fn max_hash_size(mut self, bytes: u64) -> Self {
        Arc::make_mut(&mut self.config).max_hash_size = bytes;
        self
    }

    /// Whether to evaluate preconditions (on by default).
    pub fn preconditions(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).preconditions = on;
        self
    }

    /// Evaluate the preconditions of unsafe requests (PUT, POST, DELETE…)
    /// in the layer, before the handler runs: the layer first sends a `GET`
    /// of the same URI through the inner service to learn the current
    /// validators, then forwards the request or answers 412.
    ///
    /// Off by default, because it is only safe when the inner service
    /// routes by method itself, i.e. when this layer wraps a whole router
    /// (`ServiceBuilder::new().layer(cache_control).service(router)`). Behind
    /// axum's `Router::layer` or `MethodRouter::layer` the inner service is
    /// the handler of the request's own method, and the "GET" would run the
    /// PUT handler. Off, unsafe requests reach the handler with a
    /// [`Preconditions`](crate::headers::Preconditions) extension to check.
    pub fn probe_unsafe_methods(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).probe_unsafe = on;
        self
    }

    /// A handle to this layer's statistics, shared by every service it
    /// builds.
    pub fn stats(&self) -> CacheControlStats {
        self.stats.clone()
    }
}

impl<S> Layer<S> for CacheControlLayer {
    type Service = CacheControl<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheControl {
            inner,
            config: self.config.clone(),
            stats: self.stats.clone(),
        }
    }
}
