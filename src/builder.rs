//! One-line methods on tower's `ServiceBuilder` for each layer.

use tower::ServiceBuilder;
#[cfg(feature = "compression")]
use tower::layer::util::Stack;

mod sealed {
    pub trait Sealed<T> {}
}

/// Adds a method per tower-perf layer to [`ServiceBuilder`].
///
/// ```
/// # #[cfg(feature = "compression")] {
/// use tower::ServiceBuilder;
/// use tower_perf::ServiceBuilderExt;
///
/// let builder = ServiceBuilder::new().compression();
/// # let _ = builder;
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds a [`CompressionLayer`](crate::compression::CompressionLayer)
    /// with the default settings.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    fn compression(self) -> ServiceBuilder<Stack<crate::compression::CompressionLayer, L>>;
}

impl<L> sealed::Sealed<L> for ServiceBuilder<L> {}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "compression")]
    fn compression(self) -> ServiceBuilder<Stack<crate::compression::CompressionLayer, L>> {
        self.layer(crate::compression::CompressionLayer::new())
    }
}
