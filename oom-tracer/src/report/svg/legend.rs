//! The key beside each chart: memory, limits, marks.
use plotters::{
    element::DashedPathElement,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    Area, DrawError, EXIT, FONT, GAP, KILL, attempt_color, clean, font, limit_color, part_color,
    sites::has_table,
};
use crate::{
    report::model::{Lane, LimitKind},
    schema::{AllocKind, Part},
};

/// The key, drawn by hand beside the chart so it never hides data.
pub(super) fn draw_legend(area: &Area<'_>, lane: &Lane) -> Result<(), DrawError> {
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
    if has_table(lane) {
        key.entry("kill no.: its call sites below", |area, x, y| {
            area.draw(&Text::new(
                "1",
                (x + 13, y),
                (FONT, 12)
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&KILL)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))
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
