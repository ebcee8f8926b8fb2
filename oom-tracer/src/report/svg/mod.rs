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
//!
//! A lane whose kills carry call sites gets a table below its chart
//! (`sites.rs`): one row per kill, numbered as the kill markers are
//! (the number under each marker, where there is room), with the time,
//! the victim, the growth the sites share (`grown`) and the three largest
//! sites, each as `71% stress::grow_fast ← stress::main` (`[shallow]`
//! after a stack whose callers the kernel could not see). A kill without
//! call sites says so in its row; a lane without any has no table.
use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

mod chart;
mod legend;
mod sites;

use chart::draw_lane;
#[cfg(test)]
pub(super) use sites::site_text;

use super::model::{LimitKind, Report};
use crate::schema::Part;

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
    let lane_height = |i: usize| LANE_HEIGHT + sites::table_height(&report.lanes[i]);
    let height = HEADER
        + order
            .iter()
            .map(|&i| lane_height(i))
            .sum::<u32>()
            .max(LANE_HEIGHT);
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
            let mut rest = body;
            for &i in &order {
                let lane = &report.lanes[i];
                let (area, below) = rest.split_vertically(lane_height(i));
                let (chart, table) = area.split_vertically(LANE_HEIGHT);
                draw_lane(&chart, lane, x_max)?;
                if sites::has_table(lane) {
                    sites::draw_sites(&table, lane)?;
                }
                rest = below;
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
