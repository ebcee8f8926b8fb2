//! Reading an OCI image archive (`oci-archive:`, as buildah writes it and
//! `ctr images import` reads it): its config and the files of its layers.

use std::{collections::HashMap, io::Read as _, path::Path};

use serde_json::Value;

pub(crate) struct Image {
    /// The image config (`config.Entrypoint`, `config.User`, ...).
    pub config: Value,
    /// Regular files of all layers: (path without the leading /, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Sum of the layer sizes.
    pub layer_bytes: u64,
}

/// Reads the archive's single image.
pub(crate) fn read(archive: &Path) -> Image {
    let file = std::fs::File::open(archive).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build the images with `cargo xtask images` (cargo xtask test does)",
            archive.display()
        )
    });
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut index = None;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path == "index.json" {
            index = Some(data);
        } else if let Some(digest) = path.strip_prefix("blobs/sha256/") {
            blobs.insert(format!("sha256:{digest}"), data);
        }
    }
    let json = |bytes: &[u8]| -> Value { serde_json::from_slice(bytes).unwrap() };
    let index = json(&index.unwrap_or_else(|| panic!("{}: no index.json", archive.display())));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{}: one image", archive.display());
    let blob = |d: &Value| -> &Vec<u8> {
        let d = d.as_str().unwrap();
        blobs
            .get(d)
            .unwrap_or_else(|| panic!("{}: blob {d} missing", archive.display()))
    };
    let manifest = json(blob(&manifests[0]["digest"]));
    let config = json(blob(&manifest["config"]["digest"]));
    let mut files = Vec::new();
    let mut layer_bytes = 0;
    for layer in manifest["layers"].as_array().unwrap() {
        let media = layer["mediaType"].as_str().unwrap();
        let data = blob(&layer["digest"]);
        layer_bytes += data.len() as u64;
        let reader: Box<dyn std::io::Read> = if media.ends_with("tar+gzip") {
            Box::new(flate2::read::GzDecoder::new(data.as_slice()))
        } else {
            assert!(
                media.ends_with("tar"),
                "{}: layer type {media} is not read here",
                archive.display()
            );
            Box::new(data.as_slice())
        };
        let mut t = tar::Archive::new(reader);
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let path = path
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_owned();
            if e.header().entry_type().is_dir() {
                continue;
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.push((path, data));
        }
    }
    Image {
        config,
        files,
        layer_bytes,
    }
}

/// Ok when `elf` is a statically linked executable: no program interpreter,
/// no needed shared library (a static-pie binary still has a dynamic
/// section, to relocate itself).
pub(crate) fn check_static(elf: &[u8]) -> Result<(), String> {
    if elf.len() < 64 || !elf.starts_with(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| -> Result<u64, String> {
        let b = elf.get(o..o + 8).ok_or("truncated")?;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32::from_le_bytes(elf.get(ph..ph + 4).ok_or("truncated")?.try_into().unwrap());
        match kind {
            3 => return Err("it has a program interpreter (PT_INTERP)".into()),
            2 => {
                let (off, size) = (u64_at(ph + 8)? as usize, u64_at(ph + 32)? as usize);
                for entry in (off..off + size).step_by(16) {
                    match u64_at(entry)? {
                        0 => break,
                        1 => return Err("it needs shared libraries (DT_NEEDED)".into()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
