//! A tracing subscriber for tests: it keeps every event on the threads it
//! is the default for, with its level and its fields, each written with
//! `Debug`. The integration tests reach it as `support::recorded`; the
//! library's unit tests include this file by its path.
#![allow(dead_code)] // Each user takes a different part.

use std::sync::{Arc, Mutex};

/// An event kept: its level and its fields.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub level: tracing::Level,
    pub fields: Vec<(&'static str, String)>,
}

impl Recorded {
    /// The field `name`, written with `Debug` (a message as its text).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether its message contains `text`.
    pub fn says(&self, text: &str) -> bool {
        self.field("message")
            .is_some_and(|message| message.contains(text))
    }
}

/// Keeps every event it is given; clones share what they keep.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl Recorder {
    /// The events kept so far.
    pub fn events(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(Vec<(&'static str, String)>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push((field.name(), format!("{value:?}")));
            }
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Recorded {
            level: *event.metadata().level(),
            fields: fields.0,
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
