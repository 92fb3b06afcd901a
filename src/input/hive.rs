//! Hive partition folders below an input's location
//! (`year=2024/month=01/part.csv`, `region=EU/...`): their keys, and each
//! file's values read with DataFusion's own parser (percent-decoded;
//! `__HIVE_DEFAULT_PARTITION__`, Hive's and Spark's folder for a NULL key,
//! is NULL). Every file of a partitioned input sits in folders of the same
//! keys; a file beside or outside them is refused, naming both paths.

use datafusion::datasource::listing::helpers::parse_partitions_for_path;
use datafusion::datasource::listing::ListingTableUrl;
use object_store::ObjectMeta;

use crate::error::Result;
use crate::storage::Location;

/// The folder name Hive and Spark write for a NULL partition value.
pub(super) const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// An input's partition columns and each file's values (text; `None` for
/// the default partition), in the order of the files given.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Partitions {
    /// The keys, outermost folder first; empty when not partitioned.
    pub columns: Vec<String>,
    /// One value per column for each file.
    pub values: Vec<Vec<Option<String>>>,
}

/// A partitioned folder whose files do not all sit in folders of the same
/// keys: the message names both files.
#[derive(Debug)]
pub(super) struct Mixed {
    /// The file that breaks the layout.
    pub file: String,
    /// What is wrong, naming the other file.
    pub message: String,
}

/// The folders between `root` and each file, as `(key, value)` when the
/// folder is named `key=value`, else `None`. With `published`, a file's
/// last folder when it is a published run's data folder (`run=<id>/`,
/// [`crate::publish::is_run_folder`]) is not a partition: the run is the
/// manifest's business, not a column.
fn folders(root: &Location, meta: &ObjectMeta, published: bool) -> Vec<Option<String>> {
    let Some(parts) = meta.location.prefix_match(&root.path()) else {
        return vec![];
    };
    let mut parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
    parts.pop(); // the file name
    if published
        && parts
            .last()
            .is_some_and(|p| crate::publish::is_run_folder(p))
    {
        parts.pop();
    }
    parts
        .into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, _)) if !k.is_empty() => Some(k.to_string()),
            _ => None,
        })
        .collect()
}

/// The partitions of the files `metas` below `root`; `shown` gives each
/// file's URL for messages. Not partitioned when no file sits in a
/// `key=value` folder. `published`: the files were chosen by manifests, so
/// their run folders are not partitions.
///
/// Errors: [`Mixed`] when one file is in partition folders and another is
/// not, or in folders of other keys.
pub(super) fn partitions(
    root: &Location,
    metas: &[ObjectMeta],
    published: bool,
    shown: &dyn Fn(&ObjectMeta) -> String,
) -> Result<std::result::Result<Partitions, Mixed>> {
    let keys: Vec<Vec<Option<String>>> =
        metas.iter().map(|m| folders(root, m, published)).collect();
    let Some(first) = keys.iter().position(|k| k.iter().any(Option::is_some)) else {
        return Ok(Ok(Partitions::default()));
    };
    let describe = |k: &[Option<String>]| -> String {
        if k.is_empty() {
            return "directly in the input's folder".into();
        }
        let names: Vec<&str> = k
            .iter()
            .map(|p| p.as_deref().unwrap_or("(not key=value)"))
            .collect();
        format!("in partition folders {}", names.join("/"))
    };
    let columns: Vec<String> = keys[first].iter().flatten().cloned().collect();
    for (i, k) in keys.iter().enumerate() {
        let same = k.len() == columns.len()
            && k.iter()
                .zip(&columns)
                .all(|(a, b)| a.as_deref() == Some(b.as_str()));
        if !same {
            return Ok(Err(Mixed {
                file: shown(&metas[i]),
                message: format!(
                    "a partitioned folder mixes layouts: this file is {} but {} is {}; \
                     every file must sit in folders of the same keys",
                    describe(k),
                    shown(&metas[first]),
                    describe(&keys[first])
                ),
            }));
        }
    }
    let mut root_url = root.url().as_str().to_string();
    if !root_url.ends_with('/') {
        root_url.push('/');
    }
    let table = ListingTableUrl::parse(root_url)?;
    let mut values = Vec::with_capacity(metas.len());
    for m in metas {
        let parsed =
            parse_partitions_for_path(&table, &m.location, columns.iter().map(String::as_str))
                .ok_or_else(|| {
                    crate::error::Error::Internal(format!(
                        "partition folders of {} do not parse",
                        shown(m)
                    ))
                })?;
        values.push(
            parsed
                .into_iter()
                .map(|v| (v != DEFAULT_PARTITION).then(|| v.into_owned()))
                .collect(),
        );
    }
    Ok(Ok(Partitions { columns, values }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &str) -> ObjectMeta {
        ObjectMeta {
            // As a store lists it: segments as stored, percent-encoded.
            location: object_store::path::Path::parse(path).unwrap(),
            last_modified: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            size: 1,
            e_tag: None,
            version: None,
        }
    }

    fn root() -> Location {
        Location::parse("s3://bucket/tx/", true).unwrap()
    }

    fn shown(m: &ObjectMeta) -> String {
        m.location.to_string()
    }

    #[test]
    fn values_come_from_key_value_folders_and_the_default_is_null() {
        let files = [
            meta("tx/year=2024/month=01/a.csv"),
            meta("tx/year=2024/month=__HIVE_DEFAULT_PARTITION__/b.csv"),
            meta("tx/year=2025/month=a%20b/c.csv"),
        ];
        let p = partitions(&root(), &files, false, &shown).unwrap().unwrap();
        assert_eq!(p.columns, vec!["year", "month"]);
        assert_eq!(
            p.values,
            vec![
                vec![Some("2024".into()), Some("01".into())],
                vec![Some("2024".into()), None],
                vec![Some("2025".into()), Some("a b".into())],
            ]
        );
    }

    #[test]
    fn plain_folders_are_not_partitions() {
        let files = [meta("tx/a.csv"), meta("tx/2024/b.csv")];
        let p = partitions(&root(), &files, false, &shown).unwrap().unwrap();
        assert_eq!(p, Partitions::default());
    }

    #[test]
    fn a_file_outside_the_partition_folders_names_both_paths() {
        for files in [
            [meta("tx/region=EU/a.csv"), meta("tx/stray.csv")],
            [meta("tx/loose.csv"), meta("tx/region=EU/a.csv")],
            [meta("tx/region=EU/a.csv"), meta("tx/country=FR/b.csv")],
        ] {
            let e = partitions(&root(), &files, false, &shown)
                .unwrap()
                .unwrap_err();
            let all = format!("{} {}", e.file, e.message);
            assert!(
                all.contains(files[0].location.as_ref())
                    && all.contains(files[1].location.as_ref()),
                "{all}"
            );
        }
    }
}
