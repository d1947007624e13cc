//! `--plot`: latency (p50 solid, p99 dashed) against throughput (rows/s), one line per
//! protocol or bridge and batch size through its concurrency levels, as a small
//! hand-written SVG: a few dozen elements do not need a plotting crate.

use std::fmt::Write;

use super::report::{Report, Run};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of the plot: the runs of one protocol (or bridge) at one batch size.
struct Series<'a> {
    label: String,
    runs: Vec<&'a Run>,
}

fn series(report: &Report) -> Vec<Series<'_>> {
    let mut out: Vec<Series> = Vec::new();
    let all = report
        .server
        .iter()
        .map(|r| (r, ""))
        .chain(report.in_process.iter().map(|r| (r, " in process")))
        // A run where no request succeeded has no latency to draw.
        .filter(|(r, _)| r.latency_ms.is_some());
    for (run, place) in all {
        let name = run.protocol.or(run.bridge).unwrap_or_default();
        let label = format!("{name}{place}, batch {}", run.batch);
        match out.iter_mut().find(|s| s.label == label) {
            Some(s) => s.runs.push(run),
            None => out.push(Series {
                label,
                runs: vec![run],
            }),
        }
    }
    for s in &mut out {
        s.runs.sort_by_key(|r| r.concurrency);
    }
    out
}

pub fn svg(report: &Report) -> String {
    let lines = series(report);
    let runs = || lines.iter().flat_map(|s| s.runs.iter());
    let (x_step, x_max) = axis(runs().map(|r| r.rows_per_s).fold(0.0, f64::max));
    let p99 = |r: &Run| r.latency_ms.as_ref().map_or(0.0, |l| l.p99);
    let (y_step, y_max) = axis(runs().map(|r| p99(r)).fold(0.0, f64::max));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{}: latency against throughput</text>"#,
        escape(&report.model)
    );
    // Grid, ticks and axis titles.
    for i in 0..=((x_max / x_step).round() as usize) {
        let v = i as f64 * x_step;
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(v),
            TOP + plot_h,
            TOP + plot_h + 16.0,
            tick(v)
        );
    }
    for i in 0..=((y_max / y_step).round() as usize) {
        let v = i as f64 * y_step;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            y(v),
            LEFT + plot_w,
            LEFT - 6.0,
            y(v) + 4.0,
            tick(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">throughput (rows/s)</text>
<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        TOP + plot_h / 2.0
    );
    // One line per series and percentile, a dot per run, and the legend.
    for (i, line) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        for (dash, value) in [("", 0), (r#" stroke-dasharray="5 4""#, 1)] {
            let points: Vec<String> = line
                .runs
                .iter()
                .map(|r| {
                    let l = match (&r.latency_ms, value) {
                        (Some(l), 0) => l.p50,
                        (Some(l), _) => l.p99,
                        (None, _) => 0.0,
                    };
                    format!("{:.1},{:.1}", x(r.rows_per_s), y(l))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>"#,
                points.join(" ")
            );
            for p in &points {
                let (px, py) = p.split_once(',').unwrap_or_default();
                let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"#);
            }
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(&line.label)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" fill="#555">solid: p50 · dashed: p99</text>"##,
        LEFT + plot_w + 14.0,
        TOP + 16.0 + lines.len() as f64 * 20.0
    );
    s.push_str("</svg>\n");
    s
}

/// A step of 1, 2 or 5 × 10^k giving about five ticks, and the axis end (a multiple).
fn axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    (step, (max / step).ceil() * step)
}

/// `0.25`, `40`, `12k`, `1.5M`.
fn tick(v: f64) -> String {
    let trim = |t: String| t.trim_end_matches('0').trim_end_matches('.').to_string();
    match v {
        v if v >= 1e6 => format!("{}M", trim(format!("{:.2}", v / 1e6))),
        v if v >= 1e3 => format!("{}k", trim(format!("{:.2}", v / 1e3))),
        0.0 => "0".into(),
        v => trim(format!("{v:.3}")),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_and_ticks() {
        assert_eq!(axis(9_300.0), (2_000.0, 10_000.0));
        assert_eq!(axis(0.42), (0.1, 0.5));
        assert_eq!(axis(0.0), (0.2, 1.0));
        assert_eq!(tick(12_000.0), "12k");
        assert_eq!(tick(1_500_000.0), "1.5M");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(40.0), "40");
    }
}
