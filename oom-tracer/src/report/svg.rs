//! Drawing the lanes as one SVG: a header, then one chart per container
//! with its legend on the right.
//!
//! Texts a program can look for (plotters writes each as a `<text>`):
//! one starting with `OOM kill` next to every kill marker (always), `limit
//! 50Mi` / `pod limit …` on the limit lines, `10s back-off` in each restart
//! gap, the exit code (`137 OOMKilled`) at each exit marker, `#N` (restart
//! count) at each attempt's start. At each kill with a breakdown, a bar
//! stacks what filled the memcg (anon, file, shmem, kernel, sock), the
//! cause on top; its share of the limit follows the victim's name. Where many attempts crowd a lane, the
//! back-off, exit and `#N` labels that would overlap are left out (their
//! shapes stay).
use plotters::{
    coord::{Shift, types::RangedCoordf64},
    element::DashedPathElement,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::model::{Lane, LimitKind, Report, Series};
use crate::schema::{AllocKind, Part};

pub(super) const WIDTH: u32 = 1280;
const HEADER: u32 = 60;
const LANE_HEIGHT: u32 = 340;
const LEGEND_WIDTH: u32 = 230;
/// More lanes than this make an SVG nobody can read: draw the first ones
/// (lanes with kills first) and say how many were left out.
pub(super) const MAX_LANES: usize = 100;
const MIB: f64 = (1u64 << 20) as f64;
const FONT: &str = "sans-serif";

/// One color per attempt (restarts cycle through them).
const ATTEMPT_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];
const KILL: RGBColor = RGBColor(214, 39, 40);
const EXIT: RGBColor = RGBColor(40, 40, 40);
const GAP: RGBColor = RGBColor(120, 120, 120);
const GAP_TEXT: RGBColor = RGBColor(80, 80, 80);
const GRID: RGBColor = RGBColor(235, 235, 235);
/// The breakdown bar at a kill, in pixels wide.
const BAR_WIDTH: f64 = 12.0;

/// One color per part of the breakdown.
fn part_color(p: Part) -> RGBColor {
    match p {
        Part::Anon => RGBColor(70, 130, 180),
        Part::File => RGBColor(60, 170, 90),
        Part::Shmem => RGBColor(240, 150, 30),
        Part::Kernel => RGBColor(150, 90, 200),
        Part::Sock => RGBColor(120, 120, 120),
    }
}

pub(super) type DrawError = DrawingAreaErrorKind<std::io::Error>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn attempt_color(i: usize) -> RGBColor {
    ATTEMPT_COLORS[i % ATTEMPT_COLORS.len()]
}

fn limit_color(kind: LimitKind) -> RGBColor {
    match kind {
        LimitKind::Container | LimitKind::Unknown => RGBColor(0, 0, 0),
        LimitKind::Pod => RGBColor(90, 60, 170),
        LimitKind::Ancestor => RGBColor(150, 110, 0),
    }
}

fn font(size: u32, color: RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(&color)
}

/// Text as XML allows it (plotters escapes markup but not control
/// characters), shortened to `max` characters.
fn clean(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    let n = s.chars().count();
    if n <= max {
        return s;
    }
    let keep = max.saturating_sub(1) / 2;
    let head: String = s.chars().take(keep).collect();
    let tail: String = s.chars().skip(n - keep).collect();
    format!("{head}…{tail}")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The whole picture as SVG text.
pub(super) fn render(report: &Report, source: &str) -> Result<String, DrawError> {
    let mut order: Vec<usize> = (0..report.lanes.len()).collect();
    if order.len() > MAX_LANES {
        order.sort_by_key(|&i| report.lanes[i].kills.is_empty());
        order.truncate(MAX_LANES);
        order.sort_unstable();
    }
    let drawn = order.len().max(1) as u32;
    let height = HEADER + LANE_HEIGHT * drawn;
    let x_max = if report.span_s > 0.0 && report.span_s.is_finite() {
        report.span_s * 1.03
    } else {
        1.0
    };

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        draw_header(&header, report, source, order.len())?;
        if order.is_empty() {
            body.draw_text(
                "no container records to draw",
                &font(18, GAP_TEXT).pos(Pos::new(HPos::Center, VPos::Center)),
                (WIDTH as i32 / 2, LANE_HEIGHT as i32 / 2),
            )?;
        } else {
            let areas = body.split_evenly((order.len(), 1));
            for (area, &i) in areas.iter().zip(&order) {
                draw_lane(area, &report.lanes[i], x_max)?;
            }
        }
        root.present()?;
    }
    Ok(buf)
}

fn draw_header(
    area: &Area<'_>,
    report: &Report,
    source: &str,
    drawn: usize,
) -> Result<(), DrawError> {
    area.draw_text(
        &format!("oom-tracer report: {}", clean(source, 90)),
        &(FONT, 22).into_font().style(FontStyle::Bold).color(&BLACK),
        (14, 10),
    )?;
    let mut sub = format!(
        "{} · {} · {:.2} s from first to last",
        plural(report.lanes.len(), "container"),
        plural(report.records, "record"),
        report.span_s,
    );
    if drawn < report.lanes.len() {
        sub.push_str(&format!(
            " · first {drawn} drawn ({} left out)",
            report.lanes.len() - drawn
        ));
    }
    if report.skipped > 0 {
        sub.push_str(&format!(
            " · {} skipped",
            plural(report.skipped, "malformed line")
        ));
    }
    if report.other_version > 0 {
        sub.push_str(&format!(
            " · {} of another schema version skipped",
            plural(report.other_version, "record")
        ));
    }
    area.draw_text(&sub, &font(14, GAP_TEXT), (14, 38))?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The chart's extent, and where a time lands in pixels (to keep labels
/// from piling up).
#[derive(Clone, Copy)]
struct Scale {
    x_max: f64,
    y_max: f64,
    left: f64,
    right: f64,
}

impl Scale {
    fn clip(&self, x: f64) -> f64 {
        x.clamp(0.0, self.x_max)
    }

    fn px(&self, t: f64) -> i32 {
        (self.left + self.clip(t) / self.x_max * (self.right - self.left)).round() as i32
    }
}

/// One container: its chart (memory, limits, gaps, exits, kills) and its legend.
fn draw_lane(area: &Area<'_>, lane: &Lane, x_max: f64) -> Result<(), DrawError> {
    let (plot, legend) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let y_max = {
        let m = lane.max_mib() * 1.2;
        if m.is_finite() && m >= 1.0 { m } else { 1.0 }
    };
    let mut chart = chart(&plot, lane, x_max, y_max)?;
    let scale = Scale {
        x_max,
        y_max,
        left: f64::from(chart.backend_coord(&(0.0, 0.0)).0),
        right: f64::from(chart.backend_coord(&(x_max, 0.0)).0),
    };
    draw_gaps(&mut chart, lane, scale)?;
    draw_limits(&mut chart, lane, scale)?;
    draw_memory(&mut chart, lane, scale)?;
    draw_exits(&mut chart, lane, scale)?;
    draw_breakdowns(&mut chart, lane, scale)?;
    draw_kills(&mut chart, lane, scale)?;
    draw_legend(&legend, lane)
}

/// The axes, the grid and the caption.
fn chart<'a, 'b>(
    plot: &'a Area<'b>,
    lane: &Lane,
    x_max: f64,
    y_max: f64,
) -> Result<Chart<'a, 'b>, DrawError> {
    let caption = format!(
        "{} — {}, {}",
        clean(&lane.title, 90),
        plural(lane.kills.len(), "kill"),
        plural(lane.restarts, "restart"),
    );
    let mut chart = ChartBuilder::on(plot)
        .caption(caption, (FONT, 18))
        .margin(10)
        .margin_right(24)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    let decimals = if y_max >= 10.0 { 0 } else { 1 };
    let y_fmt = move |v: &f64| format!("{v:.decimals$}");
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .y_label_formatter(&y_fmt)
        .x_desc("seconds since first record")
        .y_desc("MiB")
        .axis_desc_style((FONT, 14))
        .draw()?;
    Ok(chart)
}

/// Back-off gaps, behind everything else, labelled where there is room.
fn draw_gaps(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    chart.draw_series(lane.gaps.iter().map(|g| {
        Rectangle::new(
            [(s.clip(g.start_s), 0.0), (s.clip(g.end_s), s.y_max)],
            GAP.mix(0.18).filled(),
        )
    }))?;
    let mut room = Room::default();
    for g in &lane.gaps {
        let mid = (s.clip(g.start_s) + s.clip(g.end_s)) / 2.0;
        let label = g.label();
        let w = text_width(&label, 13);
        if room.take(s.px(mid) - w / 2, s.px(mid) + w / 2) {
            chart.draw_series(std::iter::once(Text::new(
                label,
                (mid, s.y_max * 0.5),
                font(13, GAP_TEXT).pos(Pos::new(HPos::Center, VPos::Center)),
            )))?;
        }
    }
    Ok(())
}

/// Limits: dashed lines across, labelled at the left.
fn draw_limits(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    for (i, l) in lane.limits.iter().enumerate() {
        let y = l.bytes as f64 / MIB;
        let color = limit_color(l.kind);
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, y), (s.x_max, y)],
            9,
            5,
            color.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((0.0, y))
                + Text::new(
                    l.label(),
                    (6 + 140 * i as i32, -4),
                    font(13, color).pos(Pos::new(HPos::Left, VPos::Bottom)),
                ),
        ))?;
    }
    Ok(())
}

/// Memory: one line per process per attempt, so attempts never join, and
/// `#N` (the restart count) at each attempt's start.
fn draw_memory(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    let mut room = Room::default();
    for (ai, a) in lane.attempts.iter().enumerate() {
        let color = attempt_color(ai);
        for series in &a.series {
            draw_series(chart, series, color)?;
        }
        if a.restart_count.is_none() && lane.attempts.len() == 1 {
            continue;
        }
        let label = format!("#{}", a.restart_count.map_or(ai, |n| n as usize));
        let x = s.px(a.start_s) + 4;
        if room.take(x, x + text_width(&label, 12)) {
            chart.draw_series(std::iter::once(
                EmptyElement::at((s.clip(a.start_s), s.y_max))
                    + Text::new(
                        label,
                        (4, 4),
                        font(12, color).pos(Pos::new(HPos::Left, VPos::Top)),
                    ),
            ))?;
        }
    }
    Ok(())
}

/// Anonymous memory: a line with dots; page cache: dashed; shmem: dotted
/// with squares.
fn draw_series(
    chart: &mut Chart<'_, '_>,
    series: &Series,
    color: RGBColor,
) -> Result<(), DrawError> {
    let points = series.points.iter().copied();
    match series.kind {
        AllocKind::Anon => {
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
            chart.draw_series(points_of(series).map(|p| Circle::new(p, 2, color.filled())))?;
        }
        AllocKind::File => {
            chart.draw_series(DashedLineSeries::new(points, 8, 4, color.stroke_width(2)))?;
        }
        AllocKind::Shmem => {
            chart.draw_series(DashedLineSeries::new(points, 2, 3, color.stroke_width(2)))?;
            chart.draw_series(points_of(series).map(|(x, y)| {
                EmptyElement::at((x, y)) + Rectangle::new([(-2, -2), (2, 2)], color.filled())
            }))?;
        }
    }
    Ok(())
}

fn points_of(series: &Series) -> impl Iterator<Item = (f64, f64)> + '_ {
    series.points.iter().copied()
}

/// What filled the memcg at each kill: a bar of stacked parts from 0 to
/// the usage, the largest part on top.
fn draw_breakdowns(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    let half = BAR_WIDTH / 2.0 * s.x_max / (s.right - s.left).max(1.0);
    for k in lane.kills.iter().filter(|k| !k.parts.is_empty()) {
        let x = s.clip(k.t);
        let mut base = 0.0;
        for &(part, mib) in &k.parts {
            let top = (base + mib).min(s.y_max);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x - half, base), (x + half, top)],
                part_color(part).mix(0.85).filled(),
            )))?;
            base = top;
        }
    }
    Ok(())
}

/// Exits on the time axis, the code above them (where there is room).
fn draw_exits(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    let mut room = Room::default();
    for e in &lane.exits {
        let label = clean(&e.label, 60);
        let w = text_width(&label, 12);
        let x = s.px(e.t);
        // Clear of a breakdown bar at a kill at the same time.
        let d = BAR_WIDTH as i32 / 2 + 4;
        let (dx, h, span) = if e.t < s.x_max * 0.2 {
            (d, HPos::Left, (x + d, x + d + w))
        } else {
            (-d, HPos::Right, (x - d - w, x - d))
        };
        let marker =
            EmptyElement::at((s.clip(e.t), 0.0)) + TriangleMarker::new((0, -6), 6, EXIT.filled());
        if room.take(span.0, span.1) {
            chart.draw_series(std::iter::once(
                marker
                    + Text::new(
                        label,
                        (dx, -14),
                        font(12, EXIT).pos(Pos::new(h, VPos::Bottom)),
                    ),
            ))?;
        } else {
            chart.draw_series(std::iter::once(marker))?;
        }
    }
    Ok(())
}

/// Kills: a red X at the memcg's usage and, always, a text starting with
/// "OOM kill" beside it: the victim's name where there is room, else just
/// "OOM kill", upright when even that does not fit.
fn draw_kills(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    let mut room = Room::default();
    for k in &lane.kills {
        let at = (s.clip(k.t), k.mib.clamp(0.0, s.y_max));
        let x = s.px(k.t);
        let right_side = k.t < s.x_max * 0.8;
        let (dx, h) = if right_side {
            (10, HPos::Left)
        } else {
            (-10, HPos::Right)
        };
        let span = |w: i32| {
            if right_side {
                (x + 10, x + 10 + w)
            } else {
                (x - 10 - w, x - 10)
            }
        };
        let full = clean(&k.label(), 60);
        let short = "OOM kill".to_owned();
        let (fs, fl) = (span(text_width(&full, 13)), span(text_width(&short, 13)));
        let beside =
            |t: String| Text::new(t, (dx, -6), font(13, KILL).pos(Pos::new(h, VPos::Bottom)));
        let text = if room.take(fs.0, fs.1) {
            beside(full)
        } else if room.take(fl.0, fl.1) {
            beside(short)
        } else {
            let upright = (FONT, 12)
                .into_font()
                .transform(FontTransform::Rotate270)
                .color(&KILL)
                .pos(Pos::new(HPos::Left, VPos::Center));
            Text::new(short, (0, -12), upright)
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at(at) + Cross::new((0, 0), 7, KILL.stroke_width(3)) + text,
        ))?;
    }
    Ok(())
}

/// Horizontal pixel ranges taken by labels of one kind, left to right.
#[derive(Default)]
struct Room {
    free_from: Option<i32>,
}

impl Room {
    /// Takes `[left, right]` unless it overlaps the last label taken.
    fn take(&mut self, left: i32, right: i32) -> bool {
        if self.free_from.is_some_and(|f| left < f) {
            return false;
        }
        self.free_from = Some(right + 8);
        true
    }
}

/// About how wide a text is in pixels (plotters' SVG font size is size/1.24).
fn text_width(s: &str, size: u32) -> i32 {
    (s.chars().count() as f64 * f64::from(size) / 1.24 * 0.6).ceil() as i32
}

/// The key, drawn by hand beside the chart so it never hides data.
fn draw_legend(area: &Area<'_>, lane: &Lane) -> Result<(), DrawError> {
    let mut key = Legend { area, y: 48 };
    area.draw(&Text::new(
        "legend",
        (Legend::X, key.y - 20),
        (FONT, 14)
            .into_font()
            .style(FontStyle::Bold)
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    legend_memory(&mut key, lane)?;
    legend_limits(&mut key, lane)?;
    legend_marks(&mut key, lane)
}

/// The legend's column: one entry (a symbol and its text) per line.
struct Legend<'a, 'b> {
    area: &'a Area<'b>,
    y: i32,
}

impl Legend<'_, '_> {
    const X: i32 = 8;
    const STEP: i32 = 21;

    /// `symbol` draws at (x, y) of the line; `text` follows it.
    fn entry(
        &mut self,
        text: &str,
        symbol: impl FnOnce(&Area<'_>, i32, i32) -> Result<(), DrawError>,
    ) -> Result<(), DrawError> {
        symbol(self.area, Self::X, self.y)?;
        self.area.draw(&Text::new(
            text.to_owned(),
            (Self::X + 34, self.y),
            font(13, BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        self.y += Self::STEP;
        Ok(())
    }
}

/// A line per attempt (anonymous RSS), then page cache and shmem growth.
fn legend_memory(key: &mut Legend<'_, '_>, lane: &Lane) -> Result<(), DrawError> {
    // Room for about 13 entries: fewer attempts when the kills have
    // breakdowns to explain.
    let shown = if lane.kills.iter().any(|k| !k.parts.is_empty()) {
        3
    } else {
        5
    };
    let with_memory: Vec<_> = lane
        .attempts
        .iter()
        .enumerate()
        .filter(|(_, a)| a.series.iter().any(|s| s.kind == AllocKind::Anon))
        .collect();
    for &(ai, a) in with_memory.iter().take(shown) {
        let n = a.restart_count.map_or(ai, |n| n as usize);
        let id =
            a.id.as_deref()
                .map(|id| format!(" ({})", clean(&id.chars().take(8).collect::<String>(), 8)))
                .unwrap_or_default();
        key.entry(&format!("anon RSS, #{n}{id}"), |area, x, y| {
            area.draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                attempt_color(ai).stroke_width(2),
            ))
        })?;
    }
    for (kind, what, dash, gap) in [
        (AllocKind::File, "page cache grown (dashed)", 6, 4),
        (AllocKind::Shmem, "tmpfs/shmem grown (dotted)", 2, 3),
    ] {
        let first = lane
            .attempts
            .iter()
            .position(|a| a.series.iter().any(|s| s.kind == kind));
        if let Some(ai) = first {
            key.entry(what, |area, x, y| {
                area.draw(&DashedPathElement::new(
                    vec![(x, y), (x + 26, y)],
                    dash,
                    gap,
                    attempt_color(ai).stroke_width(2),
                ))
            })?;
        }
    }
    if with_memory.len() > shown {
        let more = format!("… {} more attempts", with_memory.len() - shown);
        key.entry(&more, |_, _, _| Ok(()))?;
    }
    Ok(())
}

/// One entry per kind of limit line.
fn legend_limits(key: &mut Legend<'_, '_>, lane: &Lane) -> Result<(), DrawError> {
    let mut kinds: Vec<LimitKind> = lane.limits.iter().map(|l| l.kind).collect();
    kinds.dedup();
    for kind in kinds {
        let what = match kind {
            LimitKind::Container => "container memory limit",
            LimitKind::Pod => "pod memory limit",
            LimitKind::Ancestor => "ancestor memory limit",
            LimitKind::Unknown => "memory limit",
        };
        key.entry(what, |area, x, y| {
            area.draw(&DashedPathElement::new(
                vec![(x, y), (x + 26, y)],
                6,
                4,
                limit_color(kind).stroke_width(2),
            ))
        })?;
    }
    Ok(())
}

/// Kills, the parts of their breakdowns, exits and back-off gaps.
fn legend_marks(key: &mut Legend<'_, '_>, lane: &Lane) -> Result<(), DrawError> {
    if !lane.kills.is_empty() {
        key.entry("OOM victim (usage at kill)", |area, x, y| {
            area.draw(&Cross::new((x + 13, y), 6, KILL.stroke_width(3)))
        })?;
    }
    let mut parts: Vec<Part> = lane
        .kills
        .iter()
        .flat_map(|k| k.parts.iter().map(|p| p.0))
        .collect();
    parts.sort_unstable();
    parts.dedup();
    for part in parts {
        key.entry(&format!("at the kill: {}", part.words()), |area, x, y| {
            area.draw(&Rectangle::new(
                [(x + 7, y - 7), (x + 19, y + 7)],
                part_color(part).mix(0.85).filled(),
            ))
        })?;
    }
    if !lane.exits.is_empty() {
        key.entry("exit (code, reason)", |area, x, y| {
            area.draw(&TriangleMarker::new((x + 13, y), 6, EXIT.filled()))
        })?;
    }
    if !lane.gaps.is_empty() {
        key.entry("down (restart back-off)", |area, x, y| {
            area.draw(&Rectangle::new(
                [(x, y - 7), (x + 26, y + 7)],
                GAP.mix(0.18).filled(),
            ))
        })?;
    }
    Ok(())
}
