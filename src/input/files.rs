//! The files of an input: listing a location (one object, a folder, or the
//! files a published `_manifest.json` lists), guessing their format,
//! fingerprinting them for the manifest, and the cheap framing check of a
//! Parquet file before any reader sees it.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::Format;
use crate::publish;
use crate::storage::Location;

/// What a run read: enough to tell later whether the inputs changed.
#[derive(Debug, Clone, Serialize)]
pub struct FileFingerprint {
    /// The file's full URL (store URL and object path).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's last-modified time, RFC 3339.
    pub last_modified: String,
    /// The store's ETag, when it reports one.
    pub e_tag: Option<String>,
}

/// Guess the format from a location's name or its first file's: the
/// extension before a compression extension (`.csv.gz` is CSV).
pub(super) fn guess_format(loc: &Location, files: &[ObjectMeta]) -> Format {
    let named = |name: &str| -> Option<String> {
        let name = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        let name = match super::csv::compression_by_extension(&name) {
            Some(_) => name.rsplit_once('.').map(|(stem, _)| stem.to_string())?,
            None => name,
        };
        name.rsplit_once('.').map(|(_, ext)| ext.to_string())
    };
    let ext = (!loc.is_dir_like())
        .then(|| named(loc.url().path()))
        .flatten()
        .or_else(|| files.first().and_then(|f| named(f.location.as_ref())));
    match ext.as_deref() {
        Some("csv") | Some("tsv") | Some("txt") => Format::Csv,
        _ => Format::Parquet,
    }
}

/// The data files at a location: the object itself, or every file below a
/// folder (hidden and `_`-prefixed files excluded), sorted by path. A folder
/// holding a `_manifest.json` yields exactly the files its manifest lists,
/// and so does each subfolder holding one. The flag says whether any
/// manifest decided the files.
pub(super) async fn list_files(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
) -> Result<(Vec<ObjectMeta>, bool)> {
    let path = loc.path();
    if !loc.is_dir_like() {
        match store.head(&path).await {
            Ok(meta) => return Ok((vec![meta], false)),
            // A web server cannot list folders: a missing file is missing
            // (exit 2, no retries of a listing, no error page in the message).
            Err(object_store::Error::NotFound { .. })
                if matches!(loc.url().scheme(), "http" | "https") =>
            {
                return Err(Error::url(loc.to_string(), "not found (HTTP 404)"))
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::storage(loc.to_string(), e)),
        }
    }
    let dir = if loc.is_dir_like() {
        loc.clone()
    } else {
        Location::parse(
            &format!("{}/", loc.url().as_str().trim_end_matches('/')),
            true,
        )?
    };
    if let Some(m) = publish::read_manifest(store, &dir).await? {
        // One HEAD per listed file, 16 at a time, in the manifest's order.
        let dir_path = dir.path();
        let metas: Vec<ObjectMeta> = futures::stream::iter(&m.files)
            .map(|f| {
                let p = publish::child(&dir_path, &f.path);
                let shown = format!("{dir}{} (listed in {})", f.path, publish::MANIFEST);
                async move { store.head(&p).await.map_err(|e| Error::storage(shown, e)) }
            })
            .buffered(16)
            .try_collect()
            .await?;
        return Ok((metas, true));
    }
    let mut metas: Vec<_> = store
        .list(Some(&dir.path()))
        .try_collect()
        .await
        .map_err(|e| Error::storage(dir.to_string(), e))?;
    let managed = keep_manifest_files(store, &dir, &mut metas).await?;
    // Hidden and `_`-prefixed names below the folder are not data (Spark's
    // `_SUCCESS`, our `_manifest.json`, editors' dot files).
    let prefix = dir.path();
    metas.retain(|m| {
        m.location
            .prefix_match(&prefix)
            .map(|mut parts| {
                parts.all(|p| !p.as_ref().starts_with('.') && !p.as_ref().starts_with('_'))
            })
            .unwrap_or(false)
    });
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((metas, managed))
}

/// Below a folder, a subfolder holding a `_manifest.json` (a published
/// partition of a table folder) contributes exactly the files its manifest
/// lists: not a later run's staged files, nor a crashed run's. True when
/// some subfolder has a manifest.
async fn keep_manifest_files(
    store: &Arc<dyn ObjectStore>,
    dir: &Location,
    metas: &mut Vec<ObjectMeta>,
) -> Result<bool> {
    let root = dir.path();
    let mut folders: Vec<object_store::path::Path> = Vec::new();
    let mut listed: HashSet<object_store::path::Path> = HashSet::new();
    for m in metas.iter() {
        if m.location.filename() != Some(publish::MANIFEST) {
            continue;
        }
        let Some(parts) = m.location.prefix_match(&root) else {
            continue;
        };
        let mut parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        parts.pop();
        let folder = dir.join(&format!("{}/", parts.join("/")))?;
        if let Some(manifest) = publish::read_manifest(store, &folder).await? {
            let path = folder.path();
            listed.extend(
                manifest
                    .files
                    .iter()
                    .map(|f| publish::child(&path, &f.path)),
            );
            folders.push(path);
        }
    }
    metas.retain(|m| {
        listed.contains(&m.location) || !folders.iter().any(|f| m.location.prefix_matches(f))
    });
    Ok(!folders.is_empty())
}

/// The full URL of one listed file, as messages and manifests show it.
pub(super) fn file_url(loc: &Location, meta: &ObjectMeta) -> String {
    let base = loc
        .store_url()
        .map(|u| u.as_str().to_string())
        .unwrap_or_default();
    format!("{}{}", base, meta.location)
}

pub(super) fn fingerprint(loc: &Location, metas: &[ObjectMeta]) -> Vec<FileFingerprint> {
    metas
        .iter()
        .map(|m| FileFingerprint {
            path: file_url(loc, m),
            size: m.size,
            last_modified: m.last_modified.to_rfc3339(),
            e_tag: m.e_tag.clone(),
        })
        .collect()
}

/// A Parquet file starts and ends with `PAR1`, and its footer length fits in
/// the file. Checked before the reader sees the file: the parquet crate's
/// footer decoder overflows (and panics in debug builds) on a length larger
/// than the file.
pub(super) async fn check_parquet_frame(
    store: &Arc<dyn ObjectStore>,
    loc: &Location,
    input: &str,
    meta: &ObjectMeta,
) -> Result<()> {
    let bad = |message: String| Error::InputSchema {
        input: input.to_string(),
        url: file_url(loc, meta),
        message,
    };
    let size = meta.size;
    if size < 12 {
        return Err(bad(format!(
            "not a Parquet file: {size} bytes is too short"
        )));
    }
    let head = store
        .get_range(&meta.location, 0..4)
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
    let tail = store
        .get_range(&meta.location, size - 8..size)
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
    if head.as_ref() != b"PAR1" || &tail[4..8] != b"PAR1" {
        return Err(bad(
            "not a Parquet file: the PAR1 magic bytes are missing (truncated or another format)"
                .into(),
        ));
    }
    let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if footer + 12 > size {
        return Err(bad(format!(
            "corrupt Parquet file: its footer claims {footer} bytes but the file has {size}"
        )));
    }
    Ok(())
}
