//! One container's chart: axes and grid, back-off gaps, limits, memory by
//! kind, the breakdown bars, exits and kills, with labels kept apart.
use plotters::{
    coord::types::RangedCoordf64,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    Area, BAR_WIDTH, DrawError, EXIT, FONT, GAP, GAP_TEXT, GRID, KILL, LEGEND_WIDTH, MIB, WIDTH,
    attempt_color, clean, font,
    legend::draw_legend,
    limit_color, part_color, plural,
    sites::{MAX_ROWS, has_table},
};
use crate::{
    report::model::{Lane, Series},
    schema::AllocKind,
};

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
pub(super) fn draw_lane(area: &Area<'_>, lane: &Lane, x_max: f64) -> Result<(), DrawError> {
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
/// "OOM kill", upright when even that does not fit. With a table of call
/// sites below, each kill's number (its row) under the X, where there
/// is room.
fn draw_kills(chart: &mut Chart<'_, '_>, lane: &Lane, s: Scale) -> Result<(), DrawError> {
    let mut room = Room::default();
    let mut numbers = Room::default();
    let numbered = has_table(lane);
    for (i, k) in lane.kills.iter().enumerate() {
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
        let number = (i + 1).to_string();
        let half = text_width(&number, 12) / 2 + 2;
        if numbered && i < MAX_ROWS && numbers.take(x - half, x + half) {
            let style = (FONT, 12)
                .into_font()
                .style(FontStyle::Bold)
                .color(&KILL)
                .pos(Pos::new(HPos::Center, VPos::Top));
            // Under the X, on white over the breakdown bar.
            chart.draw_series(std::iter::once(
                EmptyElement::at(at)
                    + Rectangle::new([(-half, 9), (half, 22)], WHITE.mix(0.85).filled())
                    + Text::new(number, (0, 10), style),
            ))?;
        }
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
