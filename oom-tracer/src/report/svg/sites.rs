//! Below a chart: the call sites at each of its kills, one row per kill,
//! numbered as the kill markers are, so that a crash loop's kills stay
//! apart however close their markers are.
use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Area, DrawError, FONT, GAP_TEXT, GRID, KILL, WIDTH, clean, font};
use crate::{
    quantity::format_bytes,
    report::model::{Kill, KillSite, Lane},
};

/// Sites shown per kill (the model keeps up to 5).
pub(super) const SHOWN: usize = 3;
/// Rows per table; further kills are counted in a last line.
pub(super) const MAX_ROWS: usize = 30;
const ROW: i32 = 18;
/// The title and the column heads above the rows; the margin below.
const HEAD: i32 = 46;
const FOOT: i32 = 8;
const SIZE: u32 = 12;

/// Where each column starts, in pixels.
const X_NUM: i32 = 14;
const X_AT: i32 = 44;
const X_VICTIM: i32 = 110;
const X_GROWN: i32 = 270;
const X_SITES: i32 = 330;
const SITE_WIDTH: i32 = (WIDTH as i32 - X_SITES - 14) / SHOWN as i32;

/// A lane gets a table when any of its kills has call sites.
pub(super) fn has_table(lane: &Lane) -> bool {
    lane.kills.iter().any(|k| k.sites.is_some())
}

/// The table's height in pixels; 0 without a table.
pub(super) fn table_height(lane: &Lane) -> u32 {
    if !has_table(lane) {
        return 0;
    }
    let n = lane.kills.len();
    let rows = n.min(MAX_ROWS) + usize::from(n > MAX_ROWS);
    (HEAD + ROW * rows as i32 + FOOT) as u32
}

/// The title, the column heads, then one row per kill: its number, when,
/// the victim, the growth the sites share, and the largest sites.
pub(super) fn draw_sites(area: &Area<'_>, lane: &Lane) -> Result<(), DrawError> {
    area.draw(&Text::new(
        "Call sites at each OOM kill: the ramp's largest, by share of its growth \
         (innermost named frame ← its caller)",
        (X_NUM, 4),
        (FONT, 13).into_font().style(FontStyle::Bold).color(&BLACK),
    ))?;
    for (x, head) in [
        (X_NUM, "kill"),
        (X_AT, "at"),
        (X_VICTIM, "victim"),
        (X_GROWN, "grown"),
        (X_SITES, "largest sites"),
    ] {
        area.draw(&Text::new(head, (x, 26), font(SIZE, GAP_TEXT)))?;
    }
    for (i, k) in lane.kills.iter().take(MAX_ROWS).enumerate() {
        draw_row(area, HEAD + ROW * i as i32, i + 1, k)?;
    }
    let more = lane.kills.len().saturating_sub(MAX_ROWS);
    if more > 0 {
        area.draw(&Text::new(
            format!("… {more} more kills (`oom-tracer report --folded` has all their sites)"),
            (X_NUM, HEAD + ROW * MAX_ROWS as i32),
            font(SIZE, GAP_TEXT),
        ))?;
    }
    Ok(())
}

fn draw_row(area: &Area<'_>, y: i32, n: usize, k: &Kill) -> Result<(), DrawError> {
    if n % 2 == 1 {
        area.draw(&Rectangle::new(
            [(X_NUM - 6, y - 3), (WIDTH as i32 - 8, y + ROW - 3)],
            GRID.mix(0.6).filled(),
        ))?;
    }
    let cell = |x: i32, text: String, color: RGBColor| {
        area.draw(&Text::new(
            text,
            (x, y),
            font(SIZE, color).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
    };
    area.draw(&Text::new(
        n.to_string(),
        (X_NUM, y),
        (FONT, SIZE)
            .into_font()
            .style(FontStyle::Bold)
            .color(&KILL)
            .pos(Pos::new(HPos::Left, VPos::Top)),
    ))?;
    cell(X_AT, format!("{:.2} s", k.t), BLACK)?;
    cell(
        X_VICTIM,
        clean(&victim(k), chars(X_GROWN - X_VICTIM)),
        BLACK,
    )?;
    let Some(sites) = &k.sites else {
        return cell(X_SITES, "no call sites in the record".to_owned(), GAP_TEXT);
    };
    cell(X_GROWN, format_bytes(sites.ramp_bytes), BLACK)?;
    if sites.top.is_empty() {
        return cell(
            X_SITES,
            "none: no growth step was sampled in the cgroup".to_owned(),
            GAP_TEXT,
        );
    }
    for (j, s) in sites.top.iter().take(SHOWN).enumerate() {
        let x = X_SITES + SITE_WIDTH * j as i32;
        cell(x, site_text(s, chars(SITE_WIDTH)), BLACK)?;
    }
    Ok(())
}

/// `stress (pid 31810)`.
fn victim(k: &Kill) -> String {
    let comm = k.comm.as_deref().unwrap_or("?");
    match k.pid {
        Some(p) => format!("{comm} (pid {p})"),
        None => comm.to_owned(),
    }
}

/// Characters of the table's font that fit in `px`, with a gap after.
fn chars(px: i32) -> usize {
    // Symbols are mostly narrow lower case: 0.55 em a character.
    let per_char = f64::from(SIZE) / 1.24 * 0.55;
    (f64::from(px - 12) / per_char).floor().max(8.0) as usize
}

/// `71% stress::grow_fast ← stress::main`, `[shallow]` after a stack
/// whose callers the kernel could not see; in at most `max` characters,
/// the share and the mark always whole.
pub(in crate::report) fn site_text(s: &KillSite, max: usize) -> String {
    let share = s.share();
    let mark = if s.shallow { " [shallow]" } else { "" };
    let room = max.saturating_sub(share.chars().count() + 1 + mark.len());
    format!("{share} {}{mark}", shorten(&s.frames, room))
}

/// `inner ← caller` in `room` characters: each part shortened in its
/// middle, the innermost frame given the larger part.
fn shorten(frames: &str, room: usize) -> String {
    if frames.chars().count() <= room {
        return clean(frames, room);
    }
    let Some((inner, caller)) = frames.split_once(" ← ") else {
        return clean(frames, room);
    };
    let room = room.saturating_sub(3);
    let inner_room = (room * 3 / 5).max(room.saturating_sub(caller.chars().count()));
    let inner = clean(inner, inner_room);
    let caller = clean(caller, room.saturating_sub(inner.chars().count()));
    format!("{inner} ← {caller}")
}
