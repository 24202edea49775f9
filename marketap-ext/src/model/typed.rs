//! Typed events: your own structs as events ([`TrackEvent`]), and a
//! [`TrackingPlan`] that exports every event's name with the JSON Schema of
//! its properties, so the plan the code sends is the plan you document.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::error::ValidationError;

/// An event type of your own. Its fields are the event's properties; they
/// must serialise to a JSON object (a struct with named fields, or a map).
///
/// ```
/// use marketap_ext::{Event, TrackEvent, TrackingPlan};
/// use schemars::JsonSchema;
/// use serde::Serialize;
///
/// #[derive(Serialize, JsonSchema)]
/// struct Purchase {
///     mkt_order_id: String,
///     mkt_revenue: f64,
/// }
///
/// impl TrackEvent for Purchase {
///     const NAME: &'static str = marketap_ext::taxonomy::event::PURCHASE;
/// }
///
/// let purchase = Purchase { mkt_order_id: "o-1".into(), mkt_revenue: 42.0 };
/// let event = Event::typed("user-42", &purchase).build()?;
/// assert_eq!(event.event_name(), "mkt_purchase");
///
/// let mut plan = TrackingPlan::new();
/// plan.add::<Purchase>()?;
/// let json = plan.to_json();
/// assert!(json["events"]["mkt_purchase"]["properties"]["mkt_revenue"].is_object());
/// # Ok::<(), marketap_ext::ValidationError>(())
/// ```
pub trait TrackEvent: Serialize + JsonSchema {
    /// The event name sent as `event_name`.
    const NAME: &'static str;
}

/// Event names with the JSON Schema of their properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackingPlan {
    events: BTreeMap<&'static str, Value>,
}

impl TrackingPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `E`. Two types under one name with different schemas is an
    /// error naming the event.
    pub fn add<E: TrackEvent>(&mut self) -> Result<&mut Self, ValidationError> {
        let schema = serde_json::to_value(schemars::schema_for!(E)).map_err(|e| {
            ValidationError::Unserializable {
                field: E::NAME.to_owned(),
                reason: e.to_string(),
            }
        })?;
        match self.events.get(E::NAME) {
            Some(existing) if *existing != schema => Err(ValidationError::ConflictingEvent {
                name: crate::echo::echo(E::NAME),
            }),
            _ => {
                self.events.insert(E::NAME, schema);
                Ok(self)
            }
        }
    }

    /// The schema of one event's properties.
    pub fn schema(&self, event_name: &str) -> Option<&Value> {
        self.events.get(event_name)
    }

    /// `{"events": {"<name>": <JSON Schema>, ...}}`, names in order.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "events": self.events })
    }
}
