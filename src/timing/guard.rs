//! The record of one request in flight.

use std::sync::Arc;

use super::route::{Cell, End, Sizes};
use super::spans::Timings;

/// Records the request when it ends; as an abort if dropped before that.
pub(super) struct Guard {
    pub(super) cell: Arc<Cell>,
    /// Nanoseconds on the registry's clock.
    pub(super) start: u64,
    pub(super) status: u16,
    pub(super) done: bool,
    pub(super) timings: Option<Timings>,
    pub(super) sizes: Sizes,
    /// The OpenTelemetry record, when the layer has a meter.
    #[cfg(feature = "otel")]
    pub(super) otel: Option<Box<super::otel::InFlight>>,
}

impl Guard {
    /// Records the request as completed.
    pub(super) fn finish(&mut self) {
        self.end(End::Sent);
    }

    /// Records the request as completed with a body that failed midway: a
    /// server error whatever status its head carried.
    pub(super) fn fail(&mut self) {
        self.end(End::BodyFailed);
    }

    pub(super) fn end(&mut self, end: End) {
        if !self.done {
            self.done = true;
            let spans = self
                .timings
                .as_ref()
                .map(Timings::take_aggregates)
                .unwrap_or_default();
            let _ns = self
                .cell
                .record(self.start, self.status, end, &spans, self.sizes);
            #[cfg(feature = "otel")]
            if let Some(o) = &self.otel {
                o.end(_ns, self.status, end, self.sizes);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.cell.record_abort();
            #[cfg(feature = "otel")]
            if let Some(o) = &self.otel {
                o.abort();
            }
        }
    }
}
