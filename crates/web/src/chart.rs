//! Line charts drawn on the server as SVG: no script, no library to vendor,
//! readable at any width (the SVG scales to its box).

use maud::{Markup, html};

/// One line: its label and (unix time, value) points in time order.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(i64, f64)>,
}

const PALETTE: [&str; 6] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];
/// The drawing's size and margins, in SVG units (it scales to its box).
const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD_L: f64 = 64.0;
const PAD_B: f64 = 28.0;
const PAD_T: f64 = 10.0;
const PAD_R: f64 = 10.0;

/// A chart of `series` with the y axis in `unit`; an empty chart says so.
pub fn line_chart(id: &str, title: &str, unit: &str, series: &[Series]) -> Markup {
    let points = series.iter().flat_map(|s| &s.points);
    let (mut t0, mut t1, mut top) = (i64::MAX, i64::MIN, 0f64);
    for &(t, v) in points {
        t0 = t0.min(t);
        t1 = t1.max(t);
        top = top.max(v);
    }
    let empty = t0 > t1;
    let span = if empty { 1.0 } else { (t1 - t0).max(1) as f64 };
    let top = if top > 0.0 { top } else { 1.0 };
    let x = |t: i64| PAD_L + (t - t0) as f64 / span * (W - PAD_L - PAD_R);
    let y = |v: f64| PAD_T + (1.0 - v / top) * (H - PAD_T - PAD_B);
    html! {
        figure.chart {
            figcaption { (title) }
            svg id=(id) viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(title) preserveAspectRatio="none" {
                line x1=(PAD_L) y1=(H - PAD_B) x2=(W - PAD_R) y2=(H - PAD_B) stroke="#999" {}
                line x1=(PAD_L) y1=(PAD_T) x2=(PAD_L) y2=(H - PAD_B) stroke="#999" {}
                text x=(PAD_L - 4.0) y=(PAD_T + 10.0) text-anchor="end" font-size="11" { (short(top)) }
                text x=(PAD_L - 4.0) y=(H - PAD_B) text-anchor="end" font-size="11" { "0" }
                text x="4" y=(H / 2.0) font-size="11" { (unit) }
                @if empty {
                    text x=(W / 2.0) y=(H / 2.0) text-anchor="middle" font-size="13" fill="#666" { "nothing yet" }
                } @else {
                    text x=(PAD_L) y=(H - 8.0) font-size="11" { (crate::unix_time(t0)) }
                    text x=(W - PAD_R) y=(H - 8.0) text-anchor="end" font-size="11" { (crate::unix_time(t1)) }
                    @for (i, s) in series.iter().enumerate() {
                        polyline fill="none" stroke-width="2" stroke=(PALETTE[i % PALETTE.len()])
                            points=(s.points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect::<Vec<_>>().join(" ")) {
                            title { (s.label) }
                        }
                    }
                }
            }
            ul.legend {
                @for (i, s) in series.iter().enumerate() {
                    li { span class=(format!("swatch c{}", i % PALETTE.len())) {} (s.label) }
                }
            }
        }
    }
}

/// A value in at most 4 significant digits.
fn short(v: f64) -> String {
    if v >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_each_series_and_an_empty_one_says_so() {
        let s = [
            Series {
                label: "key a".into(),
                points: vec![(100, 0.5), (200, 1.5)],
            },
            Series {
                label: "key <b>".into(),
                points: vec![(150, 2.0)],
            },
        ];
        let svg = line_chart("spend", "Spend", "0G", &s).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("key &lt;b&gt;"), "labels are escaped");
        let none = line_chart("spend", "Spend", "0G", &[]).into_string();
        assert!(none.contains("nothing yet"));
    }
}
