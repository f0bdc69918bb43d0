//! Draws the report's three PNG plots (latency, throughput, roles), each
//! with the fault windows shaded and a legend panel on the right.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use super::{Outcome, ReportError, Summary};

/// Size of each PNG.
const SIZE: (u32, u32) = (1200, 400);
/// Width of the legend panel at the right of each plot.
const LEGEND_W: u32 = 170;
/// The font ab_glyph renders every label with.
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";

const OK: RGBColor = RGBColor(44, 160, 44);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INFO: RGBColor = RGBColor(255, 127, 14);
const DELIVER: RGBColor = RGBColor(31, 119, 180);
const TEXT: RGBColor = RGBColor(30, 30, 30);

/// Fault shading, one colour per distinct fault name (cycled).
const FAULT_COLOURS: [RGBColor; 5] = [
    RGBColor(80, 80, 200),
    RGBColor(170, 60, 170),
    RGBColor(0, 140, 140),
    RGBColor(140, 90, 40),
    RGBColor(90, 90, 90),
];
const FAULT_ALPHA: f64 = 0.16;

/// Roles in legend order, with their colours.
const ROLES: [(&str, RGBColor); 6] = [
    ("leader", RGBColor(44, 160, 44)),
    ("follower", RGBColor(31, 119, 180)),
    ("no-leader", RGBColor(255, 127, 14)),
    ("learner", RGBColor(148, 103, 189)),
    ("down", RGBColor(214, 39, 40)),
    ("paused", RGBColor(127, 127, 127)),
];
/// A role the admin API reported that is none of [`ROLES`].
const OTHER_ROLE: RGBColor = RGBColor(188, 189, 34);

/// Registers DejaVu Sans as "sans-serif" for ab_glyph, once per process.
fn font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<Result<(), Option<String>>> = OnceLock::new();
    let r = REGISTERED.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH).map_err(|_| None)?;
        let bytes: &'static [u8] = Vec::leak(bytes);
        register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| Some(format!("{FONT_PATH}: not a usable font")))
    });
    match r {
        Ok(()) => Ok(()),
        Err(None) => Err(ReportError::FontMissing(PathBuf::from(FONT_PATH))),
        Err(Some(e)) => Err(ReportError::Plot(e.clone())),
    }
}

fn plot_err(e: impl Display) -> ReportError {
    ReportError::Plot(e.to_string())
}

fn style(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&TEXT)
}

/// A legend entry's marker.
enum Marker {
    Dot,
    Line,
    Block,
    Shade,
}

/// Draws `entries` top to bottom in the legend panel.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    entries: &[(String, RGBColor, Marker)],
) -> Result<(), ReportError> {
    let (x, mut y) = (8, 40);
    area.draw(&Text::new(title.to_string(), (x, y - 22), style(15.0)))
        .map_err(plot_err)?;
    for (label, colour, marker) in entries {
        let mid = y + 7;
        match marker {
            Marker::Dot => area.draw(&Circle::new((x + 8, mid), 4, colour.filled())),
            Marker::Line => area.draw(&PathElement::new(
                vec![(x, mid), (x + 16, mid)],
                colour.stroke_width(3),
            )),
            Marker::Block => area.draw(&Rectangle::new(
                [(x, mid - 6), (x + 16, mid + 6)],
                colour.filled(),
            )),
            Marker::Shade => area.draw(&Rectangle::new(
                [(x, mid - 6), (x + 16, mid + 6)],
                colour.mix(FAULT_ALPHA * 2.0).filled(),
            )),
        }
        .map_err(plot_err)?;
        area.draw(&Text::new(shorten(label, 20), (x + 24, y), style(13.0)))
            .map_err(plot_err)?;
        y += 20;
    }
    Ok(())
}

/// `s` cut to at most `max` characters (the last one an ellipsis).
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The colour of each fault name, in order of first injection.
fn fault_colours(s: &Summary) -> Vec<(String, RGBColor)> {
    let mut names: Vec<String> = Vec::new();
    for f in &s.faults {
        if !names.contains(&f.name) {
            names.push(f.name.clone());
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, FAULT_COLOURS[i % FAULT_COLOURS.len()]))
        .collect()
}

fn fault_colour(colours: &[(String, RGBColor)], name: &str) -> RGBColor {
    colours
        .iter()
        .find(|(n, _)| n == name)
        .map_or(FAULT_COLOURS[0], |(_, c)| *c)
}

/// Legend entries for the faults.
fn fault_legend(s: &Summary) -> Vec<(String, RGBColor, Marker)> {
    fault_colours(s)
        .into_iter()
        .map(|(n, c)| (format!("fault: {n}"), c, Marker::Shade))
        .collect()
}

type Chart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>;

/// Shades each fault window over the whole height `y_lo..y_hi`; drawn
/// before the data.
fn shade_faults<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, DB, Y>,
    s: &Summary,
    y_lo: f64,
    y_hi: f64,
) -> Result<(), ReportError> {
    let colours = fault_colours(s);
    chart
        .draw_series(s.faults.iter().map(|f| {
            let c = fault_colour(&colours, &f.name);
            Rectangle::new(
                [(f.start, y_lo), (s.fault_end(f), y_hi)],
                c.mix(FAULT_ALPHA).filled(),
            )
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// Marks where each fault starts and ends, and writes its name at the top of
/// its window (staggered in rows when names would overlap); drawn after the
/// data.
fn label_faults<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, DB, Y>,
    s: &Summary,
    y_lo: f64,
    y_hi: f64,
) -> Result<(), ReportError> {
    let colours = fault_colours(s);
    let text = style(13.0);
    // Right edge (pixels) of the last label in each row.
    let mut rows: Vec<i32> = Vec::new();
    let mut order: Vec<&super::FaultWindow> = s.faults.iter().collect();
    order.sort_by(|a, b| a.start.total_cmp(&b.start));
    for f in order {
        let c = fault_colour(&colours, &f.name);
        let end = s.fault_end(f);
        let mut edges = vec![f.start];
        if f.healed.is_some() {
            edges.push(end);
        }
        for x in edges {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, y_lo), (x, y_hi)],
                    c.mix(0.6).stroke_width(1),
                )))
                .map_err(plot_err)?;
        }
        let (px, _) = chart.backend_coord(&(f.start, y_hi));
        let (w, _) = chart
            .plotting_area()
            .estimate_text_size(&f.name, &text)
            .map_err(plot_err)?;
        let row = match rows.iter().position(|right| *right < px) {
            Some(r) => r,
            None if rows.len() < 3 => {
                rows.push(i32::MIN);
                rows.len() - 1
            }
            None => rows.len() - 1,
        };
        rows[row] = px + w as i32 + 10;
        let label = EmptyElement::at((f.start, y_hi))
            + Text::new(f.name.clone(), (4, 4 + 16 * row as i32), text.clone());
        chart.plotting_area().draw(&label).map_err(plot_err)?;
    }
    Ok(())
}

/// A plot's drawing area: the chart, or its legend.
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A white PNG canvas of [`SIZE`], split into the chart (left) and its
/// legend (right).
fn canvas(path: &Path) -> Result<(Area<'_>, Area<'_>), ReportError> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    Ok(root.split_horizontally(SIZE.0 - LEGEND_W))
}

/// A chart on `main` with its caption and the margins every plot shares.
fn chart_on<'a, 'b>(main: &'a Area<'b>, caption: &str) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(main);
    b.caption(caption, style(20.0))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70);
    b
}

/// Extra room at the top of a linear y range for the fault labels.
fn headroom(s: &Summary, top: f64) -> f64 {
    if s.faults.is_empty() {
        top * 1.05
    } else {
        top * 1.3
    }
}

/// `latency.png`: one point per completed client operation, latency against
/// invocation time, coloured by outcome.
pub(super) fn latency(path: &Path, s: &Summary) -> Result<(), ReportError> {
    font()?;
    // (start s, latency ms) per outcome.
    let mut points: BTreeMap<Outcome, Vec<(f64, f64)>> = BTreeMap::new();
    for op in &s.ops {
        if let Some(end) = op.end {
            let ms = ((end - op.start) * 1000.0).max(0.01);
            points.entry(op.outcome).or_default().push((op.start, ms));
        }
    }
    let all = points.values().flatten().map(|p| p.1);
    let (lo, hi) = all.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 {
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
        (lo, hi)
    } else {
        (0.1, 1000.0)
    };
    // Room for the fault labels: a fraction of the decades shown.
    let top = if s.faults.is_empty() {
        hi
    } else {
        hi * (hi / lo).powf(0.25)
    };

    let (main, side) = canvas(path)?;
    let mut chart = chart_on(&main, "Latency of client operations")
        .build_cartesian_2d(0f64..s.x_max(), (lo..top).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .x_label_formatter(&tick)
        .y_desc("latency (ms, log)")
        .label_style(style(13.0))
        .axis_desc_style(style(14.0))
        .y_label_formatter(&|v| format_ms(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    shade_faults(&mut chart, s, lo, top)?;

    let outcomes = [
        (Outcome::Ok, OK, "ok"),
        (Outcome::Info, INFO, "info (unknown)"),
        (Outcome::Fail, FAIL, "fail"),
    ];
    for (outcome, colour, _) in outcomes {
        let pts = points.get(&outcome).map_or(&[][..], |v| &v[..]);
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new(*p, 2, colour.mix(0.8).filled())),
            )
            .map_err(plot_err)?;
    }
    label_faults(&mut chart, s, lo, top)?;

    let mut entries: Vec<(String, RGBColor, Marker)> = outcomes
        .iter()
        .map(|(o, c, name)| {
            let n = points.get(o).map_or(0, Vec::len);
            (format!("{name} ({n})"), *c, Marker::Dot)
        })
        .collect();
    entries.extend(fault_legend(s));
    legend(&side, "outcome", &entries)?;
    main.present().map_err(plot_err)?;
    Ok(())
}

/// A latency tick label: ms below a second, else s.
fn format_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", tick(&(v / 1000.0)))
    } else {
        tick(&v)
    }
}

/// A tick label: whole numbers without decimals, others with up to three.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// `throughput.png`: ok, fail and info completions and deliveries per
/// second, in 1 s buckets.
pub(super) fn throughput(path: &Path, s: &Summary) -> Result<(), ReportError> {
    font()?;
    let buckets = s.x_max().ceil() as usize;
    let bucket = |t: f64| ((t.max(0.0)) as usize).min(buckets - 1);
    // ok, fail, info, deliveries.
    let mut counts = vec![vec![0u64; buckets]; 4];
    for op in &s.ops {
        if let Some(end) = op.end {
            counts[op.outcome as usize][bucket(end)] += 1;
        }
    }
    for (t, _) in &s.deliveries {
        counts[3][bucket(*t)] += 1;
    }
    // At least 0..5, so that the ticks are whole numbers.
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(5) as f64;
    let top = headroom(s, max);

    let (main, side) = canvas(path)?;
    let mut chart = chart_on(&main, "Throughput (1 s buckets)")
        .build_cartesian_2d(0f64..s.x_max(), 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .x_label_formatter(&tick)
        .y_desc("per second")
        .y_label_formatter(&tick)
        .label_style(style(13.0))
        .axis_desc_style(style(14.0))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    shade_faults(&mut chart, s, 0.0, top)?;

    // Drawn so that the rarer series end up on top.
    let series = [
        (3, DELIVER, "deliveries"),
        (0, OK, "ok"),
        (2, INFO, "info (unknown)"),
        (1, FAIL, "fail"),
    ];
    for (i, colour, _) in series {
        // A step per bucket.
        let steps = counts[i].iter().enumerate().flat_map(|(b, c)| {
            let (x0, x1) = (b as f64, ((b + 1) as f64).min(s.x_max()));
            [(x0, *c as f64), (x1, *c as f64)]
        });
        chart
            .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
            .map_err(plot_err)?;
    }
    label_faults(&mut chart, s, 0.0, top)?;

    let mut entries: Vec<(String, RGBColor, Marker)> = series
        .iter()
        .map(|(i, c, name)| {
            let n: u64 = counts[*i].iter().sum();
            (format!("{name} ({n})"), *c, Marker::Line)
        })
        .collect();
    entries.extend(fault_legend(s));
    legend(&side, "per second", &entries)?;
    main.present().map_err(plot_err)?;
    Ok(())
}

/// `roles.png`: one lane per node (node 1 at the top), each role sample
/// coloured until the node's next sample (the last one until the end).
pub(super) fn roles(path: &Path, s: &Summary) -> Result<(), ReportError> {
    font()?;
    let nodes = s.roles.iter().map(|r| r.node).max().unwrap_or(3).max(1);
    // Lane of a node: node 1 at y = nodes, node n at y = 1.
    let lane = |node: u64| (nodes + 1 - node) as f64;
    let top = if s.faults.is_empty() {
        nodes as f64 + 0.5
    } else {
        nodes as f64 + 0.5 + 0.2 * nodes as f64
    };

    let mut per_node: BTreeMap<u64, Vec<(f64, &str)>> = BTreeMap::new();
    for r in &s.roles {
        per_node.entry(r.node).or_default().push((r.t, &r.role));
    }
    let mut bars: Vec<(f64, f64, u64, RGBColor)> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (node, samples) in per_node.iter_mut() {
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (i, (t, role)) in samples.iter().enumerate() {
            let next = samples.get(i + 1).map_or(s.end, |n| n.0);
            bars.push((*t, next.max(*t), *node, role_colour(role)));
            seen.insert(role);
        }
    }

    let (main, side) = canvas(path)?;
    let mut chart = chart_on(&main, "Node roles (admin API samples)")
        .build_cartesian_2d(0f64..s.x_max(), 0.5f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .x_label_formatter(&tick)
        .label_style(style(13.0))
        .axis_desc_style(style(14.0))
        .y_labels(0)
        .disable_y_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    shade_faults(&mut chart, s, 0.5, top)?;
    chart
        .draw_series(bars.iter().map(|(t0, t1, node, c)| {
            let y = lane(*node);
            Rectangle::new([(*t0, y - 0.3), (*t1, y + 0.3)], c.filled())
        }))
        .map_err(plot_err)?;
    label_faults(&mut chart, s, 0.5, top)?;
    // The lanes' names, left of the plotting area.
    let right = style(14.0).pos(Pos::new(HPos::Right, VPos::Center));
    for node in 1..=nodes {
        let (x, y) = chart.backend_coord(&(0.0, lane(node)));
        main.draw(&Text::new(
            format!("node {node}"),
            (x - 8, y),
            right.clone(),
        ))
        .map_err(plot_err)?;
    }

    let mut entries: Vec<(String, RGBColor, Marker)> = ROLES
        .iter()
        .map(|(r, c)| (r.to_string(), *c, Marker::Block))
        .collect();
    if seen.iter().any(|r| !ROLES.iter().any(|(k, _)| k == r)) {
        entries.push(("other".to_string(), OTHER_ROLE, Marker::Block));
    }
    entries.extend(fault_legend(s));
    legend(&side, "role", &entries)?;
    main.present().map_err(plot_err)?;
    Ok(())
}

fn role_colour(role: &str) -> RGBColor {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(OTHER_ROLE, |(_, c)| *c)
}
