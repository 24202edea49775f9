//! What is sent: the four validated items ([`item`]) and the kind-specific
//! glue the engine uses ([`kind`]), the JSON that goes into `properties`
//! ([`properties`]), the one walk over a finished item's properties
//! ([`check`]), timestamps ([`timestamp`]), Marketap's reserved names
//! ([`taxonomy`]) and their check ([`reserved`]), the typed commerce model
//! ([`commerce`]) and typed events of your own ([`typed`]).
//!
//! Nothing here touches the network: an item that exists is one the API
//! can take.

pub(crate) mod check;
pub(crate) mod commerce;
pub(crate) mod item;
pub(crate) mod kind;
pub(crate) mod properties;
pub(crate) mod reserved;
#[cfg(test)]
pub(crate) mod strategies;
pub mod taxonomy;
pub mod timestamp;
#[cfg(feature = "tracking-plan")]
pub(crate) mod typed;
