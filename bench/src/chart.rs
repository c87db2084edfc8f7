//! The one-glance chart (SVG, drawn with plotters): cache-hit throughput against the bare
//! responders, latency at the fixed rate, RSS against cache size, and per-token time against what
//! users do today (log scale).
//!
//! Pure rendering of [`Results`] into an SVG string; panels whose suite did not run say so.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Results;
use crate::suite::hit;
use crate::suite::today;

const W: u32 = 1400;
const H: u32 = 1000;
const BROKER: RGBColor = RGBColor(0, 114, 178);
const BASELINE: RGBColor = RGBColor(150, 150, 150);
const TODAY: RGBColor = RGBColor(213, 94, 0);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Renders the chart.
pub fn svg(r: &Results) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let title = format!(
            "azbroker benchmarks — {} cores, {} — {}{}",
            r.machine.cores,
            r.machine.cpu,
            r.started_utc,
            if r.plan.quick { " (quick plan)" } else { "" }
        );
        let (top, body) = root.split_vertically(40);
        top.draw_text(&title, &("sans-serif", 20).into_text_style(&top), (10, 10)).map_err(e)?;
        let panels = body.split_evenly((2, 2));
        throughput(&panels[0], r)?;
        latency(&panels[1], r)?;
        today_panel(&panels[2], r)?;
        scale(&panels[3], r)?;
        root.present().map_err(e)?;
    }
    Ok(out)
}

fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("chart: {err:?}")
}

fn missing(area: &Area<'_>, caption: &str) -> Result<()> {
    area.draw_text(
        &format!("{caption}: not measured in this run"),
        &("sans-serif", 16).into_text_style(area),
        (20, 20),
    )
    .map_err(e)
}

fn colour(target: &str) -> RGBColor {
    if target.starts_with("azbroker") { BROKER } else { BASELINE }
}

fn throughput(area: &Area<'_>, r: &Results) -> Result<()> {
    let caption = "Cache hit: requests/s (median bar, dots = rounds)";
    let Some(h) = &r.hit else { return missing(area, caption) };
    let n = h.saturation.len() as i32;
    let top = h.saturation.iter().flat_map(|s| s.runs.iter().map(|x| x.rps)).fold(1.0, f64::max) * 1.2;
    let names: Vec<String> = h.saturation.iter().map(|s| s.target.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| segment_name(v, &names))
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    let base = h.saturation_of(hit::RESPONDER).map(|s| s.median.rps).unwrap_or(f64::NAN);
    for (i, s) in h.saturation.iter().enumerate() {
        let i = i as i32;
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), s.median.rps)],
            colour(&s.target).mix(0.8).filled(),
        );
        bar.set_margin(0, 0, 25, 25);
        chart.draw_series(std::iter::once(bar)).map_err(e)?;
        chart
            .draw_series(
                s.runs.iter().map(|x| Circle::new((SegmentValue::CenterOf(i), x.rps), 3, BLACK.filled())),
            )
            .map_err(e)?;
        let label = format!("{:.0} ({:.2}×)", s.median.rps, s.median.rps / base);
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (SegmentValue::CenterOf(i), s.median.rps + top * 0.04),
                ("sans-serif", 13).into_font().color(&BLACK),
            )))
            .map_err(e)?;
    }
    Ok(())
}

fn latency(area: &Area<'_>, r: &Results) -> Result<()> {
    let Some(h) = &r.hit else { return missing(area, "Latency at a fixed rate") };
    let caption = format!("Latency at {} req/s (µs, log): p50 ○  p99 ●  p99.9 ▲", h.fixed_rate);
    let n = h.fixed.len() as i32;
    let names: Vec<String> = h.fixed.iter().map(|s| s.target.clone()).collect();
    let hi = h.fixed.iter().map(|s| s.median.p999_us).fold(1000.0, f64::max) * 2.0;
    let lo = h.fixed.iter().map(|s| s.median.p50_us).fold(f64::INFINITY, f64::min).clamp(1.0, 1e6) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n - 1).into_segmented(), (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| segment_name(v, &names))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    // The 1 ms target.
    chart
        .draw_series(DashedLineSeries::new(
            [(SegmentValue::Exact(0), 1000.0), (SegmentValue::Last, 1000.0)],
            6,
            4,
            RED.stroke_width(1),
        ))
        .map_err(e)?;
    for (i, s) in h.fixed.iter().enumerate() {
        let x = SegmentValue::CenterOf(i as i32);
        let c = colour(&s.target);
        let m = &s.median;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x.clone(), m.p50_us), (x.clone(), m.p999_us)],
                c,
            )))
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(Circle::new((x.clone(), m.p50_us), 5, c.stroke_width(2))))
            .map_err(e)?;
        chart.draw_series(std::iter::once(Circle::new((x.clone(), m.p99_us), 5, c.filled()))).map_err(e)?;
        chart
            .draw_series(std::iter::once(TriangleMarker::new((x.clone(), m.p999_us), 6, c.filled())))
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("p99 {:.0}", m.p99_us),
                (x, m.p99_us * 1.15),
                ("sans-serif", 12).into_font().color(&BLACK),
            )))
            .map_err(e)?;
    }
    Ok(())
}

fn today_panel(area: &Area<'_>, r: &Results) -> Result<()> {
    let caption = "Per token today vs through azbroker (ms, log scale)";
    let Some(t) = &r.today else { return missing(area, caption) };
    fn short(name: &str) -> &str {
        match name {
            today::AZ_CLI => "az account get-access-token",
            today::CLI_CRED_COLD => "AzureCliCredential, cold",
            today::MI_COLD => "MI credential → azbroker, cold",
            today::CLI_CRED_WARM => "AzureCliCredential, warm",
            today::MI_WARM => "MI credential → azbroker, warm",
            today::HTTP_WARM => "HTTP GET → azbroker, warm",
            other => other,
        }
    }
    let names: Vec<String> = t.methods.iter().map(|m| short(&m.name).to_owned()).collect();
    let n = names.len() as i32;
    let hi = t.methods.iter().map(|m| m.median_ms).fold(10.0, f64::max) * 4.0;
    let lo = t.methods.iter().map(|m| m.median_ms).fold(f64::INFINITY, f64::min).clamp(1e-3, 1.0) / 3.0;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(215)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n - 1).into_segmented())
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&|v| segment_name(v, &names))
        .x_label_formatter(&|v| if *v >= 1.0 { format!("{v:.0}") } else { format!("{v}") })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    for (i, m) in t.methods.iter().enumerate() {
        let i = i as i32;
        let c = if m.name.contains("azbroker") { BROKER } else { TODAY };
        let mut bar = Rectangle::new(
            [(lo, SegmentValue::Exact(i)), (m.median_ms.max(lo), SegmentValue::Exact(i + 1))],
            c.mix(0.8).filled(),
        );
        bar.set_margin(8, 8, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.2} ms", m.median_ms),
                (m.median_ms.max(lo) * 1.1, SegmentValue::CenterOf(i)),
                ("sans-serif", 13).into_font().color(&BLACK),
            )))
            .map_err(e)?;
    }
    Ok(())
}

fn scale(area: &Area<'_>, r: &Results) -> Result<()> {
    let caption = "RSS vs cached tokens (MB; labels: hit p50 over 1 connection)";
    let Some(s) = &r.scale else { return missing(area, caption) };
    if s.tiers.is_empty() {
        return missing(area, caption);
    }
    let pts: Vec<(f64, f64)> =
        s.tiers.iter().map(|t| (t.entries.max(1) as f64, t.rss_kib as f64 * 1024.0 / 1e6)).collect();
    let x_hi = pts.iter().map(|p| p.0).fold(10.0, f64::max) * 3.0;
    let y_hi = pts.iter().map(|p| p.1).fold(64.0, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((0.5f64..x_hi).log_scale(), 0.0..y_hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    for (limit, label) in [(20.0, "20 MB idle target"), (64.0, "64 MB @10k target")] {
        chart
            .draw_series(DashedLineSeries::new([(0.5, limit), (x_hi, limit)], 6, 4, RED.stroke_width(1)))
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (0.6, limit + y_hi * 0.01),
                ("sans-serif", 12).into_font().color(&RED),
            )))
            .map_err(e)?;
    }
    chart.draw_series(LineSeries::new(pts.clone(), BROKER.stroke_width(2))).map_err(e)?;
    chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, BROKER.filled()))).map_err(e)?;
    let last = pts.len() - 1;
    for (i, (t, p)) in s.tiers.iter().zip(&pts).enumerate() {
        // The last label goes left of its point, so it stays inside the plot.
        let x = if i == last && i > 0 { p.0 / 12.0 } else { p.0 * 1.15 };
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.1} MB, {:.0} µs", p.1, t.latency.p50_us),
                (x, p.1 + y_hi * 0.04),
                ("sans-serif", 12).into_font().color(&BLACK),
            )))
            .map_err(e)?;
    }
    let idle = s.idle_rss_kib as f64 * 1024.0 / 1e6;
    chart
        .draw_series(std::iter::once(Text::new(
            format!("idle {idle:.1} MB; ready {:.1} ms after exec", s.ready_median_ms),
            (0.6, y_hi * 0.93),
            ("sans-serif", 13).into_font().color(&BLACK),
        )))
        .map_err(e)?;
    Ok(())
}

fn segment_name(v: &SegmentValue<i32>, names: &[String]) -> String {
    match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}
