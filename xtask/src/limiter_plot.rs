//! `cargo xtask limiter-plot`: the limiter table test's requests, drawn.
//!
//! The test (`marketap-ext/tests/limiters.rs`) writes every request its
//! servers saw when `MARKETAP_LIMITER_CSV` names a file: the limiter, the
//! client's `max_in_flight`, the seconds since the server started, whether
//! it was refused (429) and the hidden limit then. This draws, one panel
//! per limiter shape, the requests accepted in the last second against the
//! hidden limit, one line per `max_in_flight`, each 429 a cross, into
//! `docs/limiters.svg` for the README.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use plotters::prelude::*;

/// Where the picture goes, from the repository's root.
pub const SVG: &str = "docs/limiters.svg";

/// One request the servers saw.
#[derive(Debug)]
struct Seen {
    seconds: f64,
    refused: bool,
    limit: f64,
}

/// The requests of one row: a limiter at one `max_in_flight`.
type Rows = BTreeMap<(String, u32), Vec<Seen>>;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("running the limiter test: {0}")]
    Test(String),
    #[error("drawing {SVG}: {0}")]
    Draw(String),
}

/// Draws `csv` (or, without one, a fresh run of the limiter test's) into
/// [`SVG`] under `root`.
pub fn run(root: &Path, csv: Option<&Path>) -> Result<(), PlotError> {
    let path = match csv {
        Some(path) => path.to_owned(),
        None => {
            let path = root.join("target").join("limiters.csv");
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(root)
                .args([
                    "test",
                    "--workspace",
                    "--test",
                    "limiters",
                    "--",
                    "--nocapture",
                ])
                .env("MARKETAP_LIMITER_CSV", &path)
                .status()
                .map_err(|e| PlotError::Test(e.to_string()))?;
            if !status.success() {
                return Err(PlotError::Test(format!("cargo test ended with {status}")));
            }
            path
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|source| PlotError::Read {
        path: path.clone(),
        source,
    })?;
    let rows = parse(&text).map_err(|(line, reason)| PlotError::Parse {
        path: path.clone(),
        line,
        reason,
    })?;
    draw(&rows, &root.join(SVG)).map_err(|e| PlotError::Draw(e.to_string()))?;
    println!("wrote {SVG} from {}", path.display());
    Ok(())
}

/// The rows of the test's CSV, or the line and why not.
fn parse(text: &str) -> Result<Rows, (usize, String)> {
    let mut rows = Rows::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [limiter, in_flight, seconds, refused, limit] = fields[..] else {
            return Err((index + 1, format!("{} fields, not 5", fields.len())));
        };
        let number = |field: &str, what: &str| {
            field
                .parse::<f64>()
                .map_err(|e| (index + 1, format!("{what} {field:?}: {e}")))
        };
        let in_flight = in_flight
            .parse::<u32>()
            .map_err(|e| (index + 1, format!("max_in_flight {in_flight:?}: {e}")))?;
        rows.entry((limiter.to_owned(), in_flight))
            .or_default()
            .push(Seen {
                seconds: number(seconds, "seconds")?,
                refused: refused == "1",
                limit: number(limit, "limit")?,
            });
    }
    Ok(rows)
}

/// The requests accepted in the second up to each `step`, as points.
fn accepted_per_second(seen: &[Seen], end: f64) -> Vec<(f64, f64)> {
    let step = 0.1;
    let times: Vec<f64> = seen
        .iter()
        .filter(|s| !s.refused)
        .map(|s| s.seconds)
        .collect();
    (10..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= end)
        .map(|t| {
            let count = times
                .iter()
                .filter(|at| **at > t - 1.0 && **at <= t)
                .count();
            (t, count as f64)
        })
        .collect()
}

fn draw(rows: &Rows, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut shapes: Vec<&str> = Vec::new();
    for (limiter, _) in rows.keys() {
        if !shapes.contains(&limiter.as_str()) {
            shapes.push(limiter);
        }
    }
    let panel_height = 260;
    let height = u32::try_from(shapes.len()).unwrap_or(1).max(1) * panel_height;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((shapes.len().max(1), 1));
    let colors = [RGBColor(31, 119, 180), RGBColor(44, 160, 44)];
    for (panel, shape) in panels.iter().zip(&shapes) {
        let mine: Vec<(&u32, &Vec<Seen>)> = rows
            .iter()
            .filter(|((limiter, _), _)| limiter == shape)
            .map(|((_, in_flight), seen)| (in_flight, seen))
            .collect();
        let end = mine
            .iter()
            .flat_map(|(_, seen)| seen.iter().map(|s| s.seconds))
            .fold(1.0_f64, f64::max);
        let top = mine
            .iter()
            .flat_map(|(_, seen)| seen.iter().map(|s| s.limit))
            .fold(0.0_f64, f64::max)
            * 1.4;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{shape}: requests accepted in the last second"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..end.ceil(), 0.0..top.max(10.0))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("requests/s")
            .light_line_style(WHITE)
            .draw()?;
        // The hidden limit, as it was when each request came.
        if let Some((_, seen)) = mine.first() {
            let mut limit: Vec<(f64, f64)> = Vec::new();
            for s in seen.iter() {
                if limit.last().is_none_or(|(_, l)| *l != s.limit) {
                    if let Some((_, before)) = limit.last().copied() {
                        limit.push((s.seconds, before));
                    }
                    limit.push((s.seconds.max(0.0), s.limit));
                }
            }
            if let Some((_, last)) = limit.last().copied() {
                limit.insert(0, (0.0, limit.first().map_or(last, |p| p.1)));
                limit.push((end.ceil(), last));
            }
            chart
                .draw_series(LineSeries::new(limit, BLACK.stroke_width(2)))?
                .label("hidden limit")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        }
        for ((in_flight, seen), color) in mine.iter().zip(colors.iter().cycle()) {
            let color = *color;
            chart
                .draw_series(LineSeries::new(accepted_per_second(seen, end), color))?
                .label(format!("max_in_flight {in_flight}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            chart.draw_series(
                seen.iter()
                    .filter(|s| s.refused)
                    .map(|s| Cross::new((s.seconds, top * 0.93), 5, RED.stroke_width(2))),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "limiter,max_in_flight,seconds,refused,limit\n\
        sliding window,4,0.10,0,20\n\
        sliding window,4,0.20,1,20\n\
        sliding window,4,1.05,0,20\n\
        sliding window,16,0.30,0,20\n";

    #[test]
    fn the_csv_is_read_by_row() {
        let rows = parse(CSV).unwrap();
        assert_eq!(rows.len(), 2);
        let four = &rows[&("sliding window".to_owned(), 4)];
        assert_eq!(four.len(), 3);
        assert!(four[1].refused && !four[0].refused);
        assert_eq!((four[2].seconds, four[2].limit), (1.05, 20.0));
        assert_eq!(parse("header\na,b").unwrap_err().0, 2);
        assert!(
            parse("header\na,x,1,0,20")
                .unwrap_err()
                .1
                .contains("max_in_flight")
        );
    }

    #[test]
    fn the_rate_drawn_is_the_accepted_requests_of_the_last_second() {
        let rows = parse(CSV).unwrap();
        let four = &rows[&("sliding window".to_owned(), 4)];
        let points = accepted_per_second(four, 2.0);
        assert_eq!(
            points.first().map(|p| p.1),
            Some(1.0),
            "at 1 s: the one at 0.1"
        );
        let at = |t: f64| points.iter().find(|p| (p.0 - t).abs() < 1e-9).unwrap().1;
        assert_eq!(at(1.1), 1.0, "0.1 is out, 1.05 in; the 429 never counts");
        assert_eq!(at(2.0), 1.0);
    }

    #[test]
    fn a_panel_per_shape_is_drawn() {
        let dir = std::env::temp_dir().join(format!("limiter-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plot.svg");
        draw(&parse(CSV).unwrap(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("sliding window: requests accepted"), "{svg}");
        assert!(svg.contains("max_in_flight 16"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
