//! Pulled manifests and components on disk, named by their digest.
//!
//! ```text
//! CACHE/manifests/sha256/HEX   a manifest's bytes
//! CACHE/blobs/sha256/HEX       a component's bytes
//! CACHE/tags/HEX.json          the last digest a tag resolved to (HEX: sha256 of the tag reference)
//! ```
//!
//! Every file is written to a temporary name, fsynced and renamed, so a crash
//! leaves either nothing or a whole file; every read re-hashes, and a file whose
//! bytes do not match its name is deleted and treated as absent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{Digest, Error, Reference};

/// A cache directory.
#[derive(Debug)]
pub(crate) struct Cache {
    root: PathBuf,
}

/// Which kind of content a digest names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Manifest,
    Blob,
}

#[derive(Serialize, Deserialize)]
struct TagRecord {
    reference: String,
    digest: String,
}

/// Distinguishes temporary files written concurrently by one process.
static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Cache {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        let dir = match kind {
            Kind::Manifest => "manifests",
            Kind::Blob => "blobs",
        };
        self.root.join(dir).join("sha256").join(digest.hex())
    }

    /// The file holding `digest`'s bytes (whether or not it exists).
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.path(Kind::Blob, digest)
    }

    /// The bytes named `digest`, if cached and intact. A corrupt file is removed.
    pub(crate) fn get(&self, kind: Kind, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.path(kind, digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "policy cache entry unreadable; ignored");
                return None;
            }
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            warn!(
                path = %path.display(), %actual,
                "policy cache entry does not match its digest; removed"
            );
            if let Err(e) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "cannot remove a corrupt cache entry");
            }
            return None;
        }
        Some(bytes)
    }

    /// Stores `bytes` under their digest (which the caller has verified).
    pub(crate) fn put(&self, kind: Kind, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
        write_atomically(&self.path(kind, digest), bytes)
    }

    fn tag_path(&self, tag: &Reference) -> PathBuf {
        let key = Digest::of(tag.to_string().as_bytes());
        self.root.join("tags").join(format!("{}.json", key.hex()))
    }

    /// Records that the tag reference `tag` resolved to `digest`.
    pub(crate) fn put_tag(&self, tag: &Reference, digest: &Digest) -> Result<(), Error> {
        let record = TagRecord {
            reference: tag.to_string(),
            digest: digest.to_string(),
        };
        let json = serde_json::to_vec(&record).expect("a tag record serialises");
        write_atomically(&self.tag_path(tag), &json)
    }

    /// The digest `tag` last resolved to, if recorded.
    pub(crate) fn get_tag(&self, tag: &Reference) -> Option<Digest> {
        let bytes = fs::read(self.tag_path(tag)).ok()?;
        let record: TagRecord = serde_json::from_slice(&bytes).ok()?;
        // A hash collision of names, however unlikely, must not serve another tag.
        (record.reference == tag.to_string()).then(|| Digest::parse(&record.digest).ok())?
    }
}

/// Temp file beside the target, fsync, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let cache_error = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Cache { path, source }
    };
    let dir = path.parent().expect("cache paths have a parent");
    fs::create_dir_all(dir).map_err(cache_error(dir))?;
    let name = path
        .file_name()
        .expect("cache paths have a name")
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(cache_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache(name: &str) -> (Cache, PathBuf) {
        let root =
            std::env::temp_dir().join(format!("lameduck-oci-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        (Cache::new(root.clone()), root)
    }

    #[test]
    fn round_trip_and_corruption_dropped() {
        let (cache, root) = temp_cache("rt");
        let digest = Digest::of(b"component");
        assert!(cache.get(Kind::Blob, &digest).is_none());
        cache.put(Kind::Blob, &digest, b"component").unwrap();
        assert_eq!(cache.get(Kind::Blob, &digest).unwrap(), b"component");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(root.join("blobs/sha256")).unwrap().collect();
        assert_eq!(names.len(), 1);
        fs::write(cache.blob_path(&digest), b"c0mponent").unwrap();
        assert!(cache.get(Kind::Blob, &digest).is_none());
        assert!(
            !cache.blob_path(&digest).exists(),
            "a corrupt entry is removed"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn tags_recorded() {
        let (cache, root) = temp_cache("tags");
        let tag = Reference::parse("oci://r:1/x:v1").unwrap();
        let other = Reference::parse("oci://r:1/x:v2").unwrap();
        cache.put_tag(&tag, &Digest::of(b"a")).unwrap();
        assert_eq!(cache.get_tag(&tag), Some(Digest::of(b"a")));
        assert_eq!(cache.get_tag(&other), None);
        fs::remove_dir_all(root).unwrap();
    }
}
