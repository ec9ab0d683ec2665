//! What `tracing` saw while a test ran: every span's fields (those it was
//! made with and those recorded later) and every event, kept for the test
//! to read. The subscriber is the thread's default, so a current-thread
//! runtime runs the server's tasks where it sees them.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span: its name and fields, in the order they were set.
#[derive(Debug, Clone, Default)]
pub struct SpanRecord {
    pub id: u64,
    pub name: String,
    pub fields: Vec<(String, String)>,
    /// The spans this one follows from (their ids).
    pub follows: Vec<u64>,
}

impl SpanRecord {
    /// The last value set for `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
    }
}

/// An event: its level, message and other fields.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The span the event happened in.
    pub span: Option<String>,
    pub level: tracing::Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct Spans {
    spans: Arc<Mutex<Vec<(u64, SpanRecord)>>>,
    events: Arc<Mutex<Vec<EventRecord>>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut rec = SpanRecord {
            id: id.into_u64(),
            name: attrs.metadata().name().to_owned(),
            fields: Vec::new(),
            follows: Vec::new(),
        };
        attrs.record(&mut Fields(&mut rec.fields));
        self.spans.lock().unwrap().push((id.into_u64(), rec));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        // Ids are reused once a span closes: the latest one is this.
        if let Some((_, rec)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut rec.fields));
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some((_, rec)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            rec.follows.push(follows.into_u64());
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx.event_span(event).map(|s| s.name().to_owned());
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        let message = fields
            .iter()
            .position(|(k, _)| k == "message")
            .map(|i| fields.remove(i).1)
            .unwrap_or_default();
        self.events.lock().unwrap().push(EventRecord {
            span,
            level: *event.metadata().level(),
            message,
            fields,
        });
    }
}

impl Spans {
    /// Records every span and event (all levels) until the guard drops.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    /// The spans named `name`, oldest first.
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.name == name)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<EventRecord> {
        self.events.lock().unwrap().clone()
    }
}
