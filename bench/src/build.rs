//! The `build` section: what building one event costs the caller, on the
//! thread that calls `track` (a request handler's, in a web service),
//! before anything is sent. Each way builds the benchmark's events from
//! inputs made before the clock starts, and drops each event it built
//! inside the timed loop; the ways run in turn, one further along each
//! round, in a process of their own; [`PROCESSES`] such processes, their
//! rounds pooled.

use std::{fmt::Write as _, hint::black_box, time::Instant};

use marketap_api::types::CreateEventReq;
use marketap_ext::{
    Event, Product,
    taxonomy::{event, event_property},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    contenders::{ext_event, raw_event},
    events::{self, EventSpec},
};

/// Target for `ratio build-ext/build-raw` (at most).
pub const EXT_TARGET: f64 = 1.15;
/// Target for `ratio build-purchase/build-raw-purchase` (at most): the
/// typed purchase against the same purchase written by hand.
///
/// Issue 18 first held `build-purchase` to 1.3 of `build-raw`, a one-item
/// event. But the purchase carries two line items, an order id and a
/// revenue: written by hand (`build-raw-purchase`) it alone costs 1.7 to
/// 2.1 times `build-raw`, so no SDK could meet that target. The target now
/// compares like with like, at the same 1.3; `ratio
/// build-purchase/build-raw` is still printed, for information.
pub const PURCHASE_TARGET: f64 = 1.3;

/// How many processes the section runs in. Where a process's stack and
/// heap land (ASLR draws them anew each time) moves `build-ext/build-raw`
/// by several percent: eight processes of the same binary read 1.08 to
/// 1.11. Pooled, four read close to their middle.
pub const PROCESSES: usize = 4;

/// The ways of building an event that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// A `CreateEventReq` written by hand, as the raw contender does.
    Raw,
    /// `Event::builder(..).items([product]).property(..).timestamp(..).build()`.
    Ext,
    /// `Event::purchase` with two `Product`s, plus the same property and
    /// timestamp.
    Purchase,
    /// `Event::from_raw` of the hand-written struct (building it included).
    FromRaw,
    /// The purchase of `Purchase` (two line items, order id, revenue)
    /// written by hand as a `CreateEventReq`: what `Purchase` would cost
    /// without the SDK, since it carries twice the line items of `Raw`.
    RawPurchase,
}

impl Way {
    const ALL: [Self; 5] = [
        Self::Raw,
        Self::Ext,
        Self::Purchase,
        Self::FromRaw,
        Self::RawPurchase,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Raw => "build-raw",
            Self::Ext => "build-ext",
            Self::Purchase => "build-purchase",
            Self::FromRaw => "build-from-raw",
            Self::RawPurchase => "build-raw-purchase",
        }
    }

    /// Builds `n` events this way; nanoseconds per event.
    fn time(self, n: usize) -> f64 {
        let specs: Vec<EventSpec> = events::generate(n).collect();
        let started;
        match self {
            Self::Raw => {
                started = Instant::now();
                for spec in specs {
                    one_raw(spec);
                }
            }
            Self::Ext => {
                started = Instant::now();
                for spec in specs {
                    one_ext(spec);
                }
            }
            Self::Purchase => {
                let inputs = purchase_inputs(specs);
                started = Instant::now();
                for (spec, order, second) in inputs {
                    one_purchase(spec, order, second);
                }
            }
            Self::RawPurchase => {
                let inputs = purchase_inputs(specs);
                started = Instant::now();
                for (spec, order, second) in inputs {
                    one_raw_purchase(spec, order, second);
                }
            }
            Self::FromRaw => {
                started = Instant::now();
                for spec in specs {
                    one_from_raw(spec);
                }
            }
        }
        started.elapsed().as_nanos() as f64 / n as f64
    }
}

// One event built and dropped, each way in a function of its own (never
// inlined), so that a profiler (`valgrind --tool=callgrind`) counts each
// way's instructions apart; every way pays the same call.

#[inline(never)]
fn one_raw(spec: EventSpec) {
    drop(black_box(raw_event(spec)));
}

#[inline(never)]
fn one_ext(spec: EventSpec) {
    drop(black_box(ext_event(spec)));
}

#[inline(never)]
fn one_purchase(spec: EventSpec, order: String, second: String) {
    drop(black_box(purchase(spec, order, second)));
}

#[inline(never)]
fn one_raw_purchase(spec: EventSpec, order: String, second: String) {
    drop(black_box(raw_purchase(spec, order, second)));
}

#[inline(never)]
fn one_from_raw(spec: EventSpec) {
    let event = Event::from_raw(raw_event(spec));
    drop(black_box(event.expect("the benchmark's events are valid")));
}

/// Each event's inputs with an order id and a second product id, made
/// before the clock starts.
fn purchase_inputs(specs: Vec<EventSpec>) -> Vec<(EventSpec, String, String)> {
    specs
        .into_iter()
        .map(|spec| {
            let order = format!("order-{}", spec.product_id);
            let second = format!("{}-b", spec.product_id);
            (spec, order, second)
        })
        .collect()
}

/// The revenue of the purchase: both line items.
fn revenue(spec: &EventSpec) -> f64 {
    spec.price * f64::from(spec.quantity) + spec.price
}

fn purchase(spec: EventSpec, order_id: String, second_id: String) -> Event {
    let revenue = revenue(&spec);
    let first = Product::new(spec.product_id)
        .name(spec.product_name)
        .price(spec.price)
        .quantity(spec.quantity)
        .category1(spec.category);
    let second = Product::new(second_id)
        .name(spec.product_name)
        .price(spec.price)
        .quantity(1)
        .category1(spec.category);
    Event::purchase(spec.user_id, order_id, revenue, [first, second])
        .property(events::IS_MEMBER, spec.is_member)
        .timestamp(spec.timestamp)
        .build()
        .expect("the benchmark's events are valid")
}

/// [`purchase`]'s event, written by hand as the raw contender would.
fn raw_purchase(spec: EventSpec, order_id: String, second_id: String) -> CreateEventReq {
    let revenue = revenue(&spec);
    let EventSpec {
        user_id,
        product_id,
        product_name,
        price,
        quantity,
        category,
        is_member,
        timestamp,
        ..
    } = spec;
    let item = |product_id: String, quantity: u32| {
        let mut item = Map::new();
        item.insert(events::PRODUCT_ID.into(), product_id.into());
        item.insert(events::PRODUCT_NAME.into(), product_name.into());
        item.insert(events::PRODUCT_PRICE.into(), price.into());
        item.insert(events::QUANTITY.into(), quantity.into());
        item.insert(events::CATEGORY1.into(), category.into());
        Value::Object(item)
    };
    let items = vec![item(product_id, quantity), item(second_id, 1)];
    let mut properties = Map::new();
    properties.insert(event_property::ORDER_ID.into(), order_id.into());
    properties.insert(event_property::REVENUE.into(), revenue.into());
    properties.insert(events::ITEMS.into(), items.into());
    properties.insert(events::IS_MEMBER.into(), is_member.into());
    CreateEventReq {
        event_name: event::PURCHASE.to_owned(),
        properties,
        timestamp: Some(timestamp.into_datetime()),
        user_id,
    }
}

/// What `build` processes measured: per round, ns per event for each way
/// in [`Way::ALL`] order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildResult {
    pub n: usize,
    /// How many processes the rounds came from.
    pub processes: usize,
    pub rounds: Vec<[f64; 5]>,
}

impl BuildResult {
    /// The rounds of every process, as one result.
    pub fn pooled(results: Vec<BuildResult>) -> BuildResult {
        BuildResult {
            n: results.first().map_or(0, |result| result.n),
            processes: results.iter().map(|result| result.processes).sum(),
            rounds: results
                .into_iter()
                .flat_map(|result| result.rounds)
                .collect(),
        }
    }
}

/// Times every way `rounds` times at `n` events, rotating who goes first.
pub fn run(n: usize, rounds: usize) -> BuildResult {
    // One untimed pass, so that no way pays for a cold allocator.
    for way in Way::ALL {
        way.time(n.min(1_000));
    }
    let rounds = (0..rounds)
        .map(|round| {
            let mut ns = [0.0; 5];
            for i in 0..Way::ALL.len() {
                let index = (round + i) % Way::ALL.len();
                ns[index] = Way::ALL[index].time(n);
            }
            ns
        })
        .collect();
    BuildResult {
        n,
        processes: 1,
        rounds,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

/// The section: a table of medians, targets, and `ratio` lines (each the
/// median over the rounds of the two ways' ratio in the same round).
pub fn render(result: &BuildResult) -> String {
    let mut w = String::new();
    let column = |index: usize| median(result.rounds.iter().map(|ns| ns[index]).collect());
    let ratio = |index: usize| median(result.rounds.iter().map(|ns| ns[index] / ns[0]).collect());
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "build: ns per event, median of {} rounds in {} processes, {} events a round, built and dropped on one thread",
        result.rounds.len(),
        result.processes,
        result.n
    );
    let _ = writeln!(w, "| way | ns/event |");
    let _ = writeln!(w, "|---|---:|");
    for (index, way) in Way::ALL.iter().enumerate() {
        let _ = writeln!(w, "| {} | {:.0} |", way.name(), column(index));
    }
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let ext = ratio(1);
    // The purchase against the same purchase written by hand.
    let by_hand = median(result.rounds.iter().map(|ns| ns[2] / ns[4]).collect());
    let _ = writeln!(
        w,
        "target: build-ext/build-raw <= {EXT_TARGET}: {}",
        verdict(ext <= EXT_TARGET)
    );
    let _ = writeln!(
        w,
        "target: build-purchase/build-raw-purchase <= {PURCHASE_TARGET}: {}",
        verdict(by_hand <= PURCHASE_TARGET)
    );
    let _ = writeln!(w, "ratio build-ext/build-raw: {ext:.2}");
    let _ = writeln!(w, "ratio build-purchase/build-raw-purchase: {by_hand:.2}");
    // Informational: the two-item purchase against the one-item raw event.
    let _ = writeln!(w, "ratio build-purchase/build-raw: {:.2}", ratio(2));
    let _ = writeln!(w, "ratio build-from-raw/build-raw: {:.2}", ratio(3));
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_paired_within_rounds_and_lines_are_printed() {
        let process = |round: [f64; 5]| BuildResult {
            n: 10,
            processes: 1,
            rounds: vec![round],
        };
        let result = BuildResult::pooled(vec![
            process([100.0, 110.0, 120.0, 150.0, 100.0]),
            process([200.0, 300.0, 240.0, 260.0, 120.0]),
        ]);
        let text = render(&result);
        assert!(
            text.contains("median of 2 rounds in 2 processes, 10 events a round"),
            "{text}"
        );
        // Per round 1.10 and 1.50: the median is 1.30, not 410/300.
        assert!(text.contains("ratio build-ext/build-raw: 1.30\n"), "{text}");
        assert!(
            text.contains("ratio build-purchase/build-raw: 1.20\n"),
            "{text}"
        );
        assert!(
            text.contains("target: build-ext/build-raw <= 1.15: MISSED"),
            "{text}"
        );
        // The purchase is held to the purchase by hand: 1.60 misses 1.3,
        // though against build-raw (1.20) it would have passed.
        assert!(
            text.contains("target: build-purchase/build-raw-purchase <= 1.3: MISSED"),
            "{text}"
        );
        assert!(
            !text.contains("target: build-purchase/build-raw <="),
            "{text}"
        );
        assert!(text.contains("| build-raw | 150 |"), "{text}");
        // Per round 1.20 and 2.00.
        assert!(
            text.contains("ratio build-purchase/build-raw-purchase: 1.60\n"),
            "{text}"
        );
        assert!(text.contains("| build-raw-purchase | 110 |"), "{text}");
    }

    /// The hand-written purchase is the SDK's purchase, byte for byte.
    #[test]
    fn the_purchase_by_hand_is_the_same_event() {
        for (spec, order, second) in purchase_inputs(events::generate(50).collect()) {
            let sdk = purchase(spec.clone(), order.clone(), second.clone());
            let by_hand = raw_purchase(spec, order, second);
            assert_eq!(
                serde_json::to_string(&sdk).unwrap(),
                serde_json::to_string(&by_hand).unwrap()
            );
        }
    }

    #[test]
    fn every_way_builds_and_times() {
        let result = run(5, 2);
        assert_eq!(result.rounds.len(), 2);
        assert!(result.rounds.iter().flatten().all(|ns| *ns > 0.0));
    }
}
