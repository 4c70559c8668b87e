//! The compiled-mapper cache on disk: native code a restarted node loads without compiling,
//! tagged so that only what this cache wrote is loaded, bounded in bytes.
//!
//! An entry is `MAGIC`, then HMAC-SHA256(key, file name ‖ 0 ‖ artifact), then the artifact
//! (wasmtime's serialized component). The key is 32 random bytes in `<dir>/cache.key`, created
//! 0600 on first use. The directory is refused (the node compiles without a disk cache) when it
//! is not owned by the node's user or is writable by group or others, and so is a key file
//! that is not a regular file of the node's user readable by it alone.
//!
//! Entries are `.cwasm` files; a file's modification time is its last use (set when it is
//! written and when it is loaded). After each write the oldest entries are removed until the
//! `.cwasm` files fit the bound, except the one just written and those named in use; the key
//! is never removed. Nodes sharing a directory share the bound: each counts every entry.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::RngCore;
use sha2::Sha256;

use super::cache::{CacheMetrics, TierMetrics};

/// The first bytes of every cache entry (format version 1).
const MAGIC: &[u8; 8] = b"wsgmac1\0";
/// The tag's length.
const TAG: usize = 32;
/// The key file's name in the cache directory.
const KEY_FILE: &str = "cache.key";
/// How every entry's name ends.
const ENTRY_SUFFIX: &str = ".cwasm";

/// A compiled-mapper cache directory, its key and its bound.
pub(super) struct DiskCache {
    dir: PathBuf,
    key: [u8; 32],
    bound: u64,
    metrics: TierMetrics,
    rejected: prometheus::IntCounter,
    /// One trim at a time in this process.
    trimming: Mutex<()>,
}

impl DiskCache {
    /// Opens (creating it 0700 if missing) the cache in `dir`, holding at most `bound` bytes
    /// of entries, or says why it cannot be trusted. Entries beyond the bound (a node restarted
    /// with a smaller one) are removed, oldest first.
    pub(super) fn open(dir: PathBuf, bound: u64, metrics: &CacheMetrics) -> anyhow::Result<Self> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating the mapper cache {}", dir.display()))?;
        }
        let meta = std::fs::metadata(&dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            bail!("it is not a directory");
        }
        if meta.uid() != me {
            bail!(
                "it is owned by uid {}, not this node's uid {me}",
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "it is writable by {} (mode {:o}); `chmod go-w` it",
                if meta.mode() & 0o002 != 0 {
                    "anyone"
                } else {
                    "its group"
                },
                meta.mode() & 0o7777
            );
        }
        let key = Self::key(&dir, me)?;
        let cache = DiskCache {
            dir,
            key,
            bound,
            metrics: metrics.disk.clone(),
            rejected: metrics.rejected.clone(),
            trimming: Mutex::new(()),
        };
        cache.trim(&HashSet::new());
        Ok(cache)
    }

    /// The cache's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache's key: read, or created 0600 by the first node that uses the directory (nodes
    /// sharing it race safely: the key is published with a hard link, which fails if another
    /// was first).
    fn key(dir: &Path, me: u32) -> anyhow::Result<[u8; 32]> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let partial = dir.join(format!("{KEY_FILE}.partial-{}", std::process::id()));
            let _ = std::fs::remove_file(&partial);
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .and_then(|mut file| std::io::Write::write_all(&mut file, &key));
            let published = written.and_then(|()| std::fs::hard_link(&partial, &path));
            let _ = std::fs::remove_file(&partial);
            match published {
                Ok(()) => return Ok(key),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).context("creating the cache key"),
            }
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.file_type().is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
            bail!(
                "its key {} must be a regular file of uid {me} with mode 0600",
                path.display()
            );
        }
        std::fs::read(&path)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("its key {} is not 32 bytes", path.display()))
    }

    /// The name of the entry of the module with SHA-256 `hash` compiled by an engine whose
    /// compatibility hash is `engine`.
    pub(super) fn name(hash: &[u8; 32], engine: u64) -> String {
        format!("{}-{engine:016x}{ENTRY_SUFFIX}", hex::encode(hash))
    }

    /// The artifact of entry `name`, if there is one and its tag verifies; then it counts as
    /// used now. An entry that does not verify is removed and counted.
    pub(super) fn load(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        // Read into memory rather than mapping the file: a mapped file truncated by someone
        // else would crash the process (SIGBUS) instead of failing a load.
        let mut file = std::fs::File::open(&path).ok()?;
        let mut entry = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut entry).ok()?;
        if !self.verifies(name, &entry) {
            self.rejected.inc();
            tracing::warn!(
                path = %path.display(),
                "mapper cache entry failed verification (tampered, damaged or not written by \
                 this cache): not loaded, removed, compiled afresh"
            );
            let _ = std::fs::remove_file(&path);
            self.recount();
            return None;
        }
        // The file is the node's own (0600): it may set its times.
        let _ = file.set_modified(SystemTime::now());
        entry.drain(..MAGIC.len() + TAG);
        Some(entry)
    }

    /// Writes entry `name` holding `artifact`, then removes the least recently used entries
    /// until the cache fits its bound, keeping this one and those in `in_use`.
    pub(super) fn store(
        &self,
        name: &str,
        artifact: &[u8],
        in_use: &HashSet<String>,
    ) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        let entry = self.seal(name, artifact);
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        // A file left by someone else under that name keeps its mode: make it the node's alone.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        std::io::Write::write_all(&mut file, &entry)?;
        drop(file);
        std::fs::rename(&partial, &path)?;
        let mut keep = in_use.clone();
        keep.insert(name.to_string());
        self.trim(&keep);
        Ok(())
    }

    /// Removes the least recently used entries not in `keep` until the entries fit the bound,
    /// and updates the tier's gauges.
    fn trim(&self, keep: &HashSet<String>) {
        self.trim_to(self.bound, keep);
    }

    /// Updates the tier's gauges from what the directory holds.
    fn recount(&self) {
        self.trim_to(u64::MAX, &HashSet::new());
    }

    fn trim_to(&self, bound: u64, keep: &HashSet<String>) {
        let _one_at_a_time = self.trimming.lock();
        let mut entries = self.entries();
        let mut bytes: u64 = entries.iter().map(|e| e.bytes).sum();
        entries.sort_by_key(|e| e.used);
        let mut count = entries.len();
        for entry in entries {
            if bytes <= bound {
                break;
            }
            if keep.contains(&entry.name) {
                continue;
            }
            match std::fs::remove_file(self.dir.join(&entry.name)) {
                Ok(()) => self.metrics.evictions.inc(),
                // Removed by a node sharing the directory: not there either way.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(entry = %entry.name, error = %e, "cannot evict a mapper cache entry");
                    continue;
                }
            }
            bytes -= entry.bytes;
            count -= 1;
        }
        self.metrics.bytes.set(bytes as i64);
        self.metrics.entries.set(count as i64);
    }

    /// Every entry in the directory, with its size and last use.
    fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|item| {
            let item = item.ok()?;
            let name = item.file_name().into_string().ok()?;
            let meta = item.metadata().ok()?;
            (name.ends_with(ENTRY_SUFFIX) && meta.is_file()).then(|| Entry {
                name,
                bytes: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
    }

    /// The tag of an entry named `name` holding `artifact`.
    fn mac(&self, name: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }

    /// Whether `entry` is an entry named `name` this cache wrote.
    fn verifies(&self, name: &str, entry: &[u8]) -> bool {
        let Some(rest) = entry.strip_prefix(MAGIC.as_slice()) else {
            return false;
        };
        if rest.len() < TAG {
            return false;
        }
        let (tag, artifact) = rest.split_at(TAG);
        self.mac(name, artifact).verify_slice(tag).is_ok()
    }

    /// An entry holding `artifact`, tagged.
    fn seal(&self, name: &str, artifact: &[u8]) -> Vec<u8> {
        let tag = self.mac(name, artifact).finalize().into_bytes();
        let mut entry = Vec::with_capacity(MAGIC.len() + TAG + artifact.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&tag);
        entry.extend_from_slice(artifact);
        entry
    }
}

/// A `.cwasm` file seen in the directory.
struct Entry {
    name: String,
    bytes: u64,
    used: SystemTime,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn open(dir: &Path, bound: u64) -> (DiskCache, CacheMetrics) {
        let metrics = CacheMetrics::default();
        let cache = DiskCache::open(dir.to_path_buf(), bound, &metrics).unwrap();
        (cache, metrics)
    }

    fn name(n: u8) -> String {
        DiskCache::name(&[n; 32], 7)
    }

    /// Sets an entry's last use `ago` before now.
    fn used_ago(cache: &DiskCache, name: &str, ago: Duration) {
        let file = std::fs::File::options()
            .write(true)
            .open(cache.dir().join(name))
            .unwrap();
        file.set_modified(SystemTime::now() - ago).unwrap();
    }

    /// The key file and entries `entries`, as [`names`] lists them.
    fn listing(entries: &[u8]) -> Vec<String> {
        let mut names: Vec<String> = entries.iter().map(|&n| name(n)).collect();
        names.push(KEY_FILE.to_string());
        names.sort();
        names
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn evicts_the_least_recently_used_entries_and_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three 1,000-byte artifacts with their headers.
        let (cache, metrics) = open(dir.path(), 3 * 1_040);
        let none = HashSet::new();
        for n in 1..=3 {
            cache.store(&name(n), &[n; 1_000], &none).unwrap();
            used_ago(&cache, &name(n), Duration::from_secs(100 - u64::from(n)));
        }
        // Entry 1, the oldest, is loaded: now 2 is the least recently used.
        assert_eq!(cache.load(&name(1)).unwrap(), [1; 1_000]);
        cache.store(&name(4), &[4; 1_000], &none).unwrap();
        assert_eq!(names(dir.path()), listing(&[1, 3, 4]));
        assert_eq!(metrics.disk.evictions.get(), 1);
        assert_eq!(metrics.disk.entries.get(), 3);
        assert_eq!(metrics.disk.bytes.get(), 3 * 1_040);
        assert!(cache.load(&name(2)).is_none());

        // An entry in use is kept although it is the oldest; the next oldest goes instead.
        used_ago(&cache, &name(1), Duration::from_secs(1_000));
        let in_use = HashSet::from([name(1)]);
        cache.store(&name(5), &[5; 1_000], &in_use).unwrap();
        assert_eq!(names(dir.path()), listing(&[1, 4, 5]));
        assert_eq!(metrics.disk.evictions.get(), 2);
    }

    #[test]
    fn a_smaller_bound_trims_at_open_and_the_newest_entry_stays_even_alone_too_big() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = open(dir.path(), 1 << 20);
        for n in 1..=4 {
            cache.store(&name(n), &[n; 1_000], &HashSet::new()).unwrap();
            used_ago(&cache, &name(n), Duration::from_secs(100 - u64::from(n)));
        }
        let (cache, metrics) = open(dir.path(), 2 * 1_040);
        assert_eq!(names(dir.path()), listing(&[3, 4]));
        assert_eq!(metrics.disk.evictions.get(), 2);
        cache.store(&name(9), &[9; 5_000], &HashSet::new()).unwrap();
        assert_eq!(names(dir.path()), listing(&[9]));
        assert_eq!(metrics.disk.bytes.get(), 5_040);
    }

    #[test]
    fn an_entry_that_does_not_verify_is_removed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, metrics) = open(dir.path(), 1 << 20);
        cache.store(&name(1), &[1; 1_000], &HashSet::new()).unwrap();
        // The same entry under another name: its tag covers the name.
        std::fs::copy(dir.path().join(name(1)), dir.path().join(name(2))).unwrap();
        assert!(cache.load(&name(2)).is_none());
        assert_eq!(metrics.rejected.get(), 1);
        assert_eq!(names(dir.path()), listing(&[1]));
        assert!(cache.load(&name(1)).is_some());
    }
}
