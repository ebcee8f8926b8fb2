//! Length-checked decoding of ring-buffer records (userspace only).

use core::mem::size_of;

use crate::{
    AllocEvent, CgroupEvent, EventHeader, EventKind, ExecEvent, ExitEvent, MemcgGrowthEvent,
    MemcgProbeEvent, OomEvent, OomTasksEvent, SignalEvent,
};

/// A decoded ring-buffer record (the large ones boxed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawEvent {
    Exec(ExecEvent),
    Exit(ExitEvent),
    Alloc(AllocEvent),
    Oom(Box<OomEvent>),
    Signal(SignalEvent),
    CgroupMkdir(CgroupEvent),
    CgroupRmdir(CgroupEvent),
    CgroupAttach(CgroupEvent),
    MemcgProbe(Box<MemcgProbeEvent>),
    OomTasks(Box<OomTasksEvent>),
    MemcgGrowth(MemcgGrowthEvent),
}

impl RawEvent {
    pub fn header(&self) -> &EventHeader {
        match self {
            Self::Exec(e) => &e.hdr,
            Self::Exit(e) => &e.hdr,
            Self::Alloc(e) => &e.hdr,
            Self::Oom(e) => &e.hdr,
            Self::Signal(e) => &e.hdr,
            Self::CgroupMkdir(e) | Self::CgroupRmdir(e) | Self::CgroupAttach(e) => &e.hdr,
            Self::MemcgProbe(e) => &e.hdr,
            Self::OomTasks(e) => &e.hdr,
            Self::MemcgGrowth(e) => &e.hdr,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte {what}")]
    Truncated {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("record has unknown event kind {0}")]
    UnknownKind(u32),
}

/// Types that may be read from raw bytes: `#[repr(C)]` ABI structs made
/// only of integers and byte arrays, for which every bit pattern is valid.
trait Plain: Copy {
    const NAME: &'static str;
}

macro_rules! plain {
    ($($t:ty),*) => {$(impl Plain for $t { const NAME: &'static str = stringify!($t); })*};
}
plain!(
    EventHeader,
    ExecEvent,
    ExitEvent,
    AllocEvent,
    OomEvent,
    SignalEvent,
    CgroupEvent,
    MemcgProbeEvent,
    OomTasksEvent,
    MemcgGrowthEvent
);

fn read<T: Plain>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Truncated {
            what: T::NAME,
            len: bytes.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: the length was checked above; `T: Plain` is valid for any bit
    // pattern; `read_unaligned` has no alignment requirement.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one record. Never panics: short or unknown records are errors.
pub fn decode(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let hdr: EventHeader = read(bytes)?;
    let kind = EventKind::try_from(hdr.kind).map_err(DecodeError::UnknownKind)?;
    Ok(match kind {
        EventKind::Exec => RawEvent::Exec(read(bytes)?),
        EventKind::Exit => RawEvent::Exit(read(bytes)?),
        EventKind::Alloc => RawEvent::Alloc(read(bytes)?),
        EventKind::Oom => RawEvent::Oom(Box::new(read(bytes)?)),
        EventKind::Signal => RawEvent::Signal(read(bytes)?),
        EventKind::CgroupMkdir => RawEvent::CgroupMkdir(read(bytes)?),
        EventKind::CgroupRmdir => RawEvent::CgroupRmdir(read(bytes)?),
        EventKind::CgroupAttach => RawEvent::CgroupAttach(read(bytes)?),
        EventKind::MemcgProbe => RawEvent::MemcgProbe(Box::new(read(bytes)?)),
        EventKind::OomTasks => RawEvent::OomTasks(Box::new(read(bytes)?)),
        EventKind::MemcgGrowth => RawEvent::MemcgGrowth(read(bytes)?),
    })
}

/// Bytes of a NUL-padded C string field, up to the first NUL.
pub fn c_bytes(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// The raw bytes of an ABI struct, as the kernel would write them (tests, fuzzing).
pub fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: reading the initialised bytes of a `Copy` value; the ABI
    // structs have explicit padding so every byte is initialised.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decode_props.rs"]
mod props;
