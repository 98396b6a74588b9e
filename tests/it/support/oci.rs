//! Tiny container images made in Rust, so no test ever pulls one: a hand-written ustar writer, gzip with
//! stored (uncompressed) deflate blocks, sha256 digests, and a one-layer OCI image written as an OCI
//! image layout directory (for skopeo `oci:DIR:TAG`) or as a tarred layout (for `ctr images import`).

use std::fs;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The annotation skopeo's `oci:DIR:TAG` and the OCI spec use for a tag in index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd's importer takes a full image name from.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The file every test image holds.
pub const IMAGE_FILE: &str = "hello.txt";

/// One content-addressed blob of an image.
pub struct Blob {
    pub media_type: &'static str,
    /// `sha256:<hex>`
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, digest: sha256_digest(&bytes), bytes }
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }

    /// `<hex>`, the file name under blobs/sha256/.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// A one-layer image for the host platform whose layer holds `hello.txt`.
pub struct OciImage {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

impl OciImage {
    /// An image whose single file holds `content`: different contents give different digests.
    pub fn tiny(content: &str) -> OciImage {
        let layer_tar = tar(&[(IMAGE_FILE, content.as_bytes())]);
        let diff_id = sha256_digest(&layer_tar);
        let layer = Blob::new(MEDIA_TYPE_LAYER_GZIP, gzip_stored(&layer_tar));
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": host_architecture(),
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "portcullis test harness" }],
        });
        let config = Blob::new(MEDIA_TYPE_CONFIG, to_json(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        });
        let manifest = Blob::new(MEDIA_TYPE_MANIFEST, to_json(&manifest));
        OciImage { layer, config, manifest }
    }

    /// index.json naming the manifest `tag` (and, for containerd, `image_name` in full).
    fn index(&self, tag: &str, image_name: Option<&str>) -> Vec<u8> {
        let mut descriptor = self.manifest.descriptor();
        let mut annotations = json!({ ANNOTATION_REF_NAME: tag });
        if let Some(name) = image_name {
            annotations[ANNOTATION_CONTAINERD_NAME] = json!(name);
        }
        descriptor["annotations"] = annotations;
        descriptor["platform"] = json!({ "architecture": host_architecture(), "os": "linux" });
        to_json(&json!({ "schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [descriptor] }))
    }

    /// The files of an OCI image layout, relative to its root.
    fn layout_files(&self, tag: &str, image_name: Option<&str>) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![
            ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".to_string(), self.index(tag, image_name)),
        ];
        for blob in [&self.layer, &self.config, &self.manifest] {
            files.push((format!("blobs/sha256/{}", blob.hex()), blob.bytes.clone()));
        }
        files
    }

    /// Writes the image as an OCI image layout in `dir` (created if needed), tagged `tag`:
    /// `skopeo ... oci:DIR:TAG` reads it.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        for (name, bytes) in self.layout_files(tag, None) {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap_or_else(|err| panic!("create {}: {err}", parent.display()));
            }
            fs::write(&path, bytes).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        }
    }

    /// The image layout as one tar stream (an "OCI archive") naming the image `image_name`
    /// (`host:port/repo:tag`), for `ctr images import`.
    pub fn archive(&self, image_name: &str) -> Vec<u8> {
        let tag =
            image_name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or("latest", |(_, t)| t);
        let files = self.layout_files(tag, Some(image_name));
        let mut entries: Vec<(&str, &[u8])> = vec![("blobs/", &[]), ("blobs/sha256/", &[])];
        entries.extend(files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
        tar(&entries)
    }
}

/// Writes a tiny OCI image layout (one layer holding `content`) into `dir`, tagged `tag`, for
/// skopeo's `oci:DIR:TAG`; returns the image so tests can compare digests.
pub fn make_oci_layout(dir: &Path, tag: &str, content: &str) -> OciImage {
    let image = OciImage::tiny(content);
    image.write_layout(dir, tag);
    image
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The OCI/Go name of this machine's architecture (images for another one are skipped by importers).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialize JSON built with json!")
}

/// A ustar archive of `entries` (path, contents). A path ending in `/` is a directory (contents
/// ignored); paths must be under 100 bytes. Owner root, fixed mtime: the same input gives the same bytes.
pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(path, contents) in entries {
        let is_dir = path.ends_with('/');
        let contents: &[u8] = if is_dir { &[] } else { contents };
        assert!(path.len() < 100, "tar path too long for this tiny writer: {path}");
        let mut header = [0u8; 512];
        header[..path.len()].copy_from_slice(path.as_bytes());
        put_octal(&mut header[100..108], if is_dir { 0o755 } else { 0o644 });
        put_octal(&mut header[108..116], 0); // uid
        put_octal(&mut header[116..124], 0); // gid
        put_octal(&mut header[124..136], contents.len() as u64);
        put_octal(&mut header[136..148], 1_704_067_200); // 2024-01-01T00:00:00Z
        header[156] = if is_dir { b'5' } else { b'0' };
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        // The checksum is computed with its own field read as spaces.
        header[148..156].copy_from_slice(b"        ");
        let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(contents);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0); // two zero blocks end the archive
    out
}

/// Writes `value` as zero-padded octal filling `field` except for its final NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() == width, "{value} does not fit a {width}-digit tar field");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

/// A valid gzip stream of `data` using stored deflate blocks: no compression, no extra dependency.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]; // magic, deflate, no flags, mtime 0, unix
    let mut chunks = data.chunks(usize::from(u16::MAX)).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]); // one final, empty stored block
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = u16::try_from(chunk.len()).expect("chunks are at most u16::MAX bytes");
        out.push(u8::from(last)); // BFINAL bit, BTYPE 00 (stored)
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes()); // ISIZE is the length mod 2^32
    out
}

/// CRC-32 (IEEE, reflected), as gzip needs it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
