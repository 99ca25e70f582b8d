//! `latency.svg`: latency percentiles by concurrency, notify against poll
//! (one instance each), both axes logarithmic.

use plotters::prelude::*;

use super::scenario::RoundTrips;

const WIDTH: u32 = 860;
const HEIGHT: u32 = 520;

/// Reads one percentile of a scenario.
type Pick = fn(&RoundTrips) -> f64;

/// One line of the chart: (concurrency, milliseconds) points.
struct Line {
    label: String,
    color: RGBColor,
    width: u32,
    points: Vec<(f64, f64)>,
}

fn lines(rts: &[RoundTrips]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (wake, colors) in [
        (
            "notify",
            [
                RGBColor(0, 90, 200),
                RGBColor(70, 140, 230),
                RGBColor(140, 185, 245),
            ],
        ),
        (
            "poll",
            [
                RGBColor(200, 40, 30),
                RGBColor(230, 110, 80),
                RGBColor(245, 170, 150),
            ],
        ),
    ] {
        let mut runs: Vec<&RoundTrips> = rts
            .iter()
            .filter(|r| r.wake == wake && r.instances == 1 && r.latency.count > 0)
            .collect();
        runs.sort_by_key(|r| r.concurrency);
        if runs.is_empty() {
            continue;
        }
        let percentiles: [(&str, Pick, u32); 3] = [
            ("p50", |r| r.latency.p50_ms, 3),
            ("p90", |r| r.latency.p90_ms, 2),
            ("p99", |r| r.latency.p99_ms, 1),
        ];
        for ((name, value, width), color) in percentiles.into_iter().zip(colors) {
            lines.push(Line {
                label: format!("{wake} {name}"),
                color,
                width,
                points: runs
                    .iter()
                    .map(|r| (r.concurrency as f64, value(r).max(0.001)))
                    .collect(),
            });
        }
    }
    lines
}

/// The chart as an SVG document (an empty chart with a note when nothing was measured).
pub fn latency_svg(rts: &[RoundTrips]) -> anyhow::Result<String> {
    let lines = lines(rts);
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let x_max = xs.clone().fold(1.0f64, f64::max);
    let x_min = xs.fold(x_max, f64::min);
    let y_max = ys.clone().fold(1.0f64, f64::max);
    let y_min = ys.fold(y_max, f64::min);
    let x_range = (x_min / 1.5).max(0.5)..x_max * 1.5;
    let y_range = (y_min / 1.5)..(y_max * 1.5);
    // Gridlines and labels at the measured concurrencies and at 1-2-5 steps.
    let mut x_keys: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    x_keys.sort_by(f64::total_cmp);
    x_keys.dedup();
    let y_keys: Vec<f64> = (-2..=5)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|y| y_range.contains(y))
        .collect();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Round-trip latency by concurrency: notify vs poll (1 instance)",
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(
                x_range.log_scale().with_key_points(x_keys),
                y_range.log_scale().with_key_points(y_keys),
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("concurrent submitters")
            .y_desc("latency (ms)")
            .bold_line_style(BLACK.mix(0.12))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| {
                if *y < 1.0 {
                    format!("{y}")
                } else {
                    format!("{y:.0}")
                }
            })
            .draw()
            .map_err(plot_error)?;
        if lines.is_empty() {
            root.draw(&Text::new(
                "no notify/poll scenario was measured",
                (WIDTH as i32 / 3, HEIGHT as i32 / 2),
                ("sans-serif", 16),
            ))
            .map_err(plot_error)?;
        }
        for line in &lines {
            let style = ShapeStyle::from(&line.color).stroke_width(line.width);
            let color = line.color;
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(plot_error)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, line.width + 2, color.filled())),
                )
                .map_err(plot_error)?;
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart failed: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::tests_support::rt;

    #[test]
    fn chart_has_a_line_per_wake_and_percentile() {
        let rts = vec![
            rt("notify", 1, 1, 900.0, 1.0),
            rt("notify", 1, 16, 3000.0, 4.0),
            rt("poll", 1, 1, 9.0, 105.0),
            rt("poll", 1, 16, 90.0, 150.0),
            rt("notify", 3, 16, 2000.0, 30.0),
        ];
        assert_eq!(lines(&rts).len(), 6);
        let svg = latency_svg(&rts).unwrap();
        for label in [
            "notify p50",
            "notify p99",
            "poll p90",
            "concurrent submitters",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn empty_chart_still_renders() {
        let svg = latency_svg(&[]).unwrap();
        assert!(svg.contains("no notify/poll scenario was measured"));
    }
}
