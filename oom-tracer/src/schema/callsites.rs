//! Call sites: which code filled the cgroup (the ramp's user stacks, with
//! their bytes) and the stacks of the allocation that hit the limit.
use serde::{Deserialize, Serialize};

/// The call sites of an `oom_kill` (and of the `cycle` it ends).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Callsites {
    /// How the kernel unwound every stack here: `frame_pointers` (it
    /// follows the frame-pointer chain; code built without frame pointers
    /// gives one or two frames, marked `shallow`).
    pub unwinder: String,
    /// The trigger's user stack at the kill (where its allocation was).
    pub trigger_user: Stack,
    /// The kernel stack of the charge that failed (a page fault, a tmpfs
    /// write, a slab allocation...).
    pub trigger_kernel: Stack,
    /// The ramp's largest sites in the victim's cgroup (at most 5), largest
    /// first: the user stacks that grew it, sampled at each growth step.
    pub top: Vec<Site>,
    /// Bytes of all the ramp's sites in the cgroup (the shares' whole).
    pub ramp_bytes: u64,
    /// Sites the cgroup had.
    pub site_count: u64,
}

/// One site of the ramp.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Site {
    pub bytes: u64,
    /// Percent of `ramp_bytes`.
    pub share_pct: f64,
    pub stack: Stack,
}

/// A stack, innermost frame first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Stack {
    pub frames: Vec<Frame>,
    /// Frames the kernel's unwinder got.
    pub depth: u32,
    /// One or two frames: most likely code without frame pointers, whose
    /// callers the kernel could not see.
    pub shallow: bool,
    /// Why there are no frames: `not_taken` (the kernel could not take the
    /// stack: a kernel thread has no user stack, or its bucket in the stack
    /// map held another), `gone` (evicted before it was read), `off`.
    pub missing: Option<String>,
}

/// One frame. `symbol` where the address could be named from the binary
/// it lies in (checked against its build id); else `module` and `offset`
/// (the file offset) with the `build_id`, to name it later.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The address, hex.
    pub addr: String,
    pub symbol: Option<String>,
    pub module: Option<String>,
    pub offset: Option<u64>,
    pub build_id: Option<String>,
    /// A caller in a `shallow` stack: the frame-pointer chain of code
    /// built without frame pointers may lead to a frame that is not the
    /// caller (an outer one, or none at all): do not take it as the caller.
    pub unsure: bool,
}

impl Frame {
    /// `symbol`, else `module+0xoffset`, else the address; `?` after an
    /// `unsure` frame.
    pub(crate) fn label(&self) -> String {
        let name = match (&self.symbol, &self.module, self.offset) {
            (Some(s), _, _) => s.clone(),
            (None, Some(m), Some(o)) => {
                let base = m.rsplit('/').next().unwrap_or(m);
                format!("{base}+{o:#x}")
            }
            _ => self.addr.clone(),
        };
        if self.unsure {
            format!("{name}?")
        } else {
            name
        }
    }
}

impl Stack {
    /// The innermost frame with a name, else the innermost frame, in one
    /// line; `?` for a stack without frames.
    pub(crate) fn top_label(&self) -> String {
        self.frames
            .iter()
            .find(|f| f.symbol.is_some())
            .or(self.frames.first())
            .map_or_else(|| "?".to_owned(), Frame::label)
    }
}
