#!/usr/bin/env python3
"""Pack one static binary into an OCI image archive (stdlib only).

Usage:
    oci-pack.py BINARY IMAGE_REF ENTRYPOINT OUTPUT_TAR [--dest PATH] [--arch amd64]

    BINARY      the static executable to pack
    IMAGE_REF   full reference, e.g. localhost/oom-tracer/stress:test
    ENTRYPOINT  a path ("/stress") or a JSON array ('["/stress","--step","5Mi"]')
    OUTPUT_TAR  where to write the archive (written atomically)
    --dest      where the binary goes in the image (default: ENTRYPOINT[0])

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...)
holding one uncompressed tar layer with the binary (mode 0755, owner 0:0), an
image config (architecture, os, Entrypoint, rootfs.diff_ids) and a manifest.
index.json names the image with the annotations that `ctr images import`
reads: io.containerd.image.name (the full reference) and
org.opencontainers.image.ref.name (the tag). Import with:

    ctr -n k8s.io images import OUTPUT_TAR

The output is reproducible: the same binary and arguments give the same bytes
(every timestamp is SOURCE_DATE_EPOCH, default 0), so the image digest only
changes when the binary does.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import time

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mtime: int, mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str, mtime: int):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info)


def build_layer(binary: bytes, dest: str, mtime: int) -> bytes:
    """An uncompressed tar layer holding `binary` at `dest` (and its parent dirs)."""
    parts = dest.strip("/").split("/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(1, len(parts)):
            add_dir(tar, "/".join(parts[:i]) + "/", mtime)
        add_file(tar, "/".join(parts), binary, mtime, mode=0o755)
    return buf.getvalue()


def split_ref(ref: str):
    """Returns the tag of `ref` ("latest" when it has none)."""
    last = ref.rsplit("/", 1)[-1]
    if "@" in last:
        raise SystemExit(f"oci-pack: {ref!r}: digest references are not supported")
    return last.split(":", 1)[1] if ":" in last else "latest"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("binary")
    p.add_argument("image_ref")
    p.add_argument("entrypoint")
    p.add_argument("output")
    p.add_argument("--dest", help="path of the binary in the image (default: ENTRYPOINT[0])")
    p.add_argument("--arch", default="amd64")
    a = p.parse_args()

    if a.entrypoint.lstrip().startswith("["):
        entrypoint = json.loads(a.entrypoint)
        if not entrypoint or not all(isinstance(x, str) for x in entrypoint):
            raise SystemExit("oci-pack: ENTRYPOINT must be a non-empty JSON array of strings")
    else:
        entrypoint = [a.entrypoint]
    dest = a.dest or entrypoint[0]
    if not dest.startswith("/"):
        raise SystemExit(f"oci-pack: destination {dest!r} must be an absolute path")
    tag = split_ref(a.image_ref)
    if ":" not in a.image_ref.rsplit("/", 1)[-1]:
        a.image_ref += ":latest"

    try:
        with open(a.binary, "rb") as f:
            binary = f.read()
    except OSError as e:
        raise SystemExit(f"oci-pack: cannot read {a.binary}: {e}")
    if binary[:4] != b"\x7fELF":
        raise SystemExit(f"oci-pack: {a.binary} is not an ELF executable")

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))

    layer = build_layer(binary, dest, mtime)
    layer_digest = sha256(layer)  # uncompressed: digest == diff_id

    config = canonical_json(
        {
            "created": created,
            "architecture": a.arch,
            "os": "linux",
            "config": {
                "Entrypoint": entrypoint,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/",
                "Labels": {"org.opencontainers.image.title": a.image_ref},
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created": created, "created_by": f"oci-pack.py {os.path.basename(a.binary)} -> {dest}"}],
        }
    )
    config_digest = sha256(config)

    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    )
    manifest_digest = sha256(manifest)

    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"architecture": a.arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": a.image_ref,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )

    tmp = a.output + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        add_file(out, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}), mtime)
        add_file(out, "index.json", index, mtime)
        add_dir(out, "blobs/", mtime)
        add_dir(out, "blobs/sha256/", mtime)
        for blob in (layer, config, manifest):
            add_file(out, "blobs/sha256/" + sha256(blob)[len("sha256:"):], blob, mtime)
    os.replace(tmp, a.output)

    print(json.dumps({"image": a.image_ref, "manifest": manifest_digest, "config": config_digest,
                      "layer": layer_digest, "entrypoint": entrypoint, "output": a.output}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
