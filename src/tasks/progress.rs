//! `TaskProgress`: how a handler running as a task says how far it got.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use http::Extensions;

/// The longest progress message kept, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_PROGRESS_MESSAGE: usize = 256;

/// A handle a handler reports its progress through: a percentage (0 to
/// 100) and a short message, shown by the task's monitor.
///
/// A request the [`AsyncLayer`](super::AsyncLayer) runs as a task carries
/// one in its extensions; anywhere else (a request answered inline, a
/// service without the layer) [`from_extensions`](Self::from_extensions)
/// gives a no-op one, so a handler reports progress the same way whether
/// or not it was deferred. With the `axum` feature it is also an
/// extractor that never fails.
///
/// ```
/// use http::Request;
/// use tower_perf::tasks::TaskProgress;
///
/// let req = Request::new(());
/// let progress = TaskProgress::from_extensions(req.extensions());
/// assert!(!progress.is_deferred());
/// progress.set(50, "half way"); // nobody listens: nothing happens
/// ```
#[derive(Clone, Default)]
pub struct TaskProgress {
    cell: Option<Arc<Cell>>,
}

#[derive(Default)]
pub(super) struct Cell {
    percent: AtomicU8,
    message: Mutex<Option<Box<str>>>,
}

impl TaskProgress {
    /// A handle that reports to nobody.
    pub fn noop() -> Self {
        Self::default()
    }

    /// The handle a request carries, or a no-op one.
    pub fn from_extensions(extensions: &Extensions) -> Self {
        extensions.get::<Self>().cloned().unwrap_or_default()
    }

    pub(super) fn new() -> Self {
        Self {
            cell: Some(Arc::default()),
        }
    }

    /// Whether this request runs as a background task (someone reads the
    /// progress).
    pub fn is_deferred(&self) -> bool {
        self.cell.is_some()
    }

    /// Reports `percent` (above 100 reads as 100) and a message (cut to
    /// [`MAX_PROGRESS_MESSAGE`] bytes).
    pub fn set(&self, percent: u8, message: impl Into<String>) {
        let Some(cell) = &self.cell else { return };
        cell.percent.store(percent.min(100), Ordering::Relaxed);
        let mut message = message.into();
        message.truncate(super::record::prefix(&message, MAX_PROGRESS_MESSAGE).len());
        if let Ok(mut m) = cell.message.lock() {
            *m = Some(message.into_boxed_str());
        }
    }

    /// Reports `percent` alone, keeping the last message.
    pub fn set_percent(&self, percent: u8) {
        if let Some(cell) = &self.cell {
            cell.percent.store(percent.min(100), Ordering::Relaxed);
        }
    }

    /// The last percentage and message reported (0 and none at first).
    pub fn get(&self) -> (u8, Option<String>) {
        match &self.cell {
            Some(cell) => (
                cell.percent.load(Ordering::Relaxed),
                cell.message
                    .lock()
                    .ok()
                    .and_then(|m| m.as_deref().map(str::to_owned)),
            ),
            None => (0, None),
        }
    }
}

impl std::fmt::Debug for TaskProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (percent, message) = self.get();
        f.debug_struct("TaskProgress")
            .field("deferred", &self.is_deferred())
            .field("percent", &percent)
            .field("message", &message)
            .finish()
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TaskProgress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions))
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PROGRESS_MESSAGE, TaskProgress};

    #[test]
    fn reports_reach_every_clone_and_are_bounded() {
        let p = TaskProgress::new();
        let q = p.clone();
        q.set(250, "é".repeat(MAX_PROGRESS_MESSAGE));
        let (percent, message) = p.get();
        assert_eq!(percent, 100);
        let message = message.unwrap();
        assert!(message.len() <= MAX_PROGRESS_MESSAGE && message.chars().all(|c| c == 'é'));
        q.set_percent(30);
        assert_eq!(p.get().0, 30);
        assert!(p.get().1.is_some());
        let none = TaskProgress::noop();
        none.set(10, "x");
        assert_eq!(none.get(), (0, None));
    }
}
