//! A sample `callsites` object for the schema's round-trip tests.
use super::super::*;

pub(super) fn callsites() -> Callsites {
    let frame = |s: Option<&str>| Frame {
        addr: "0x55d0c0a21234".into(),
        symbol: s.map(Into::into),
        module: Some("/usr/bin/stress".into()),
        offset: Some(0x21234),
        build_id: Some("4f1c".into()),
        unsure: s.is_none(),
    };
    let stack = Stack {
        frames: vec![frame(Some("stress::grow_fast")), frame(None)],
        depth: 2,
        shallow: true,
        missing: None,
    };
    Callsites {
        unwinder: "frame_pointers".into(),
        trigger_user: stack.clone(),
        trigger_kernel: Stack {
            missing: Some("gone".into()),
            ..Stack::default()
        },
        top: vec![Site {
            bytes: 40 << 20,
            share_pct: 71.4,
            stack,
        }],
        ramp_bytes: 56 << 20,
        site_count: 2,
    }
}
