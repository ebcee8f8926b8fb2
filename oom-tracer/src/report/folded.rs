//! `oom-tracer report --folded`: the call sites of every OOM kill as folded
//! stacks (`root;outer;...;inner bytes`), which inferno, speedscope and
//! flamegraph.pl take as they are. The root frame is the container (else
//! the victim's command); each top site's stack is weighted by its bytes,
//! and equal stacks of several kills are summed.
use std::{collections::BTreeMap, io::BufRead};

use crate::schema::{Body, Record, Stack};

/// Folded lines of the kills in `input`, sorted; the kills that carried
/// call sites.
pub(super) fn fold(input: impl BufRead) -> std::io::Result<(String, usize)> {
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    let mut kills = 0;
    for line in input.split(b'\n') {
        let line = line?;
        // Only kills matter: other lines are skipped unread.
        if !line.windows(18).any(|w| w == b"\"event\":\"oom_kill\"") {
            continue;
        }
        let Ok(r) = serde_json::from_slice::<Record>(&line) else {
            continue;
        };
        let Body::OomKill(o) = r.body else { continue };
        let Some(c) = o.callsites else { continue };
        kills += 1;
        let root = o
            .container
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| o.victim.comm.clone());
        for site in &c.top {
            *sums.entry(folded(&root, &site.stack)).or_default() += site.bytes;
        }
    }
    let text = sums.iter().map(|(s, b)| format!("{s} {b}\n")).collect();
    Ok((text, kills))
}

/// `root;outermost;...;innermost`; a stack without frames is `root;[why]`.
fn folded(root: &str, s: &Stack) -> String {
    let mut parts = vec![clean(root)];
    if s.frames.is_empty() {
        parts.push(format!("[{}]", s.missing.as_deref().unwrap_or("no frames")));
    }
    parts.extend(s.frames.iter().rev().map(|f| clean(&f.label())));
    if s.shallow {
        // Callers the kernel could not see (no frame pointers).
        parts.insert(1, "[shallow]".to_owned());
    }
    parts.join(";")
}

/// Folded stacks split on `;` and end at the last space.
fn clean(s: &str) -> String {
    s.replace([';', ' ', '\n'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILL: &str = r#"{"v":1,"time":"2026-11-27T18:00:00.000000Z","event":"oom_kill","kind":"memcg","victim":{"pid":7,"tgid":7,"comm":"stress","anon_rss_bytes":1,"file_rss_bytes":0,"shmem_rss_bytes":0,"total_vm_bytes":1,"oom_score_adj":0,"uid":0},"trigger":{"pid":7,"tgid":7,"comm":"stress","cgroup":null},"memcg":null,"victim_cgroup":null,"source":"tp_btf/mark_victim","pod":null,"container":null,"callsites":{"unwinder":"frame_pointers","trigger_user":{"frames":[],"depth":0,"shallow":false,"missing":"gone"},"trigger_kernel":{"frames":[],"depth":0,"shallow":false,"missing":"gone"},"top":[{"bytes":30,"share_pct":75.0,"stack":{"frames":[{"addr":"0x2","symbol":"stress::grow_fast","module":"/s","offset":2,"build_id":null,"unsure":false},{"addr":"0x1","symbol":"main","module":"/s","offset":1,"build_id":null,"unsure":false}],"depth":2,"shallow":false,"missing":null}},{"bytes":10,"share_pct":25.0,"stack":{"frames":[{"addr":"0x9","symbol":null,"module":"/lib/libc.so.6","offset":9,"build_id":"ab","unsure":false}],"depth":1,"shallow":true,"missing":null}}],"ramp_bytes":40,"site_count":2}}"#;

    #[test]
    fn kills_fold_outermost_first_and_sum() {
        let input = format!("{KILL}\n{KILL}\nnot json\n");
        let (text, kills) = fold(input.as_bytes()).unwrap();
        assert_eq!(kills, 2);
        assert_eq!(
            text,
            "stress;[shallow];libc.so.6+0x9 20\nstress;main;stress::grow_fast 60\n"
        );
    }
}
