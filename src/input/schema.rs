//! The schema of a folder of files: each file's own schema (a Parquet
//! footer, a CSV file's header and first records), read concurrently, and
//! their union by column name: numeric and temporal types widen, a column
//! missing from a file is NULL there, every column is nullable, and a type
//! nothing reconciles is an error naming both files.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore};

pub(super) use super::csv::InferError;
use super::csv::{self, CsvOptions};

/// Files whose schemas are read at the same time (each read is one footer
/// or the first records of one file).
const CONCURRENT_READS: usize = 16;

/// One file's own schema. CSV columns are in header order.
#[derive(Debug, Clone)]
pub(super) struct FileSchema {
    pub url: String,
    pub schema: SchemaRef,
    /// The file starts with a UTF-8 byte order mark (CSV only).
    pub bom: bool,
}

/// How files are read: Parquet footers, or CSV with a dialect.
#[derive(Clone, Copy)]
pub(super) enum Reader<'a> {
    /// Parquet (or another format DataFusion infers itself).
    Parquet(&'a dyn FileFormat),
    /// CSV files with these options.
    Csv(&'a CsvOptions),
}

/// Read every file's schema, at most [`CONCURRENT_READS`] at a time, in the
/// order of `files` (shown URL, the object read, its compression). The
/// error names the file it is about.
pub(super) async fn infer_each(
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    reader: Reader<'_>,
    files: &[(String, ObjectMeta, FileCompressionType)],
) -> Result<Vec<FileSchema>, (String, InferError)> {
    let reads = files.iter().map(|(url, meta, compression)| async move {
        let schema = match reader {
            Reader::Parquet(format) => format
                .infer_schema(state, store, std::slice::from_ref(meta))
                .await
                .map(|s| (s, false))
                .map_err(|e| match e {
                    DataFusionError::ObjectStore(e) => InferError::Store(*e),
                    e => InferError::Decode(e.to_string()),
                }),
            Reader::Csv(opts) => {
                csv::infer(Arc::clone(store), meta.clone(), *compression, opts).await
            }
        };
        schema
            .map(|(schema, bom)| FileSchema {
                url: url.clone(),
                schema,
                bom,
            })
            .map_err(|e| (url.clone(), e))
    });
    futures::stream::iter(reads)
        .buffered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Two files give one column types nothing reconciles.
#[derive(Debug)]
pub(super) struct Conflict {
    pub column: String,
    pub file: String,
    pub file_type: DataType,
    pub other_file: String,
    pub other_type: DataType,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schema differs: column {:?} is {} in {} but {} in {}; the files of one input must agree on each column's kind (text, number, date/time)",
            self.column, self.file_type, self.file, self.other_type, self.other_file
        )
    }
}

/// The union of the files' columns by name, in order of first appearance,
/// each nullable, with the widest type of its files. Field metadata comes
/// from the first file that has the column.
pub(super) fn union(files: &[FileSchema]) -> Result<SchemaRef, Conflict> {
    // (field, file that set its type)
    let mut fields: Vec<(Field, &str)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for file in files {
        for f in file.schema.fields() {
            match index.get(f.name()) {
                None => {
                    index.insert(f.name().clone(), fields.len());
                    fields.push((f.as_ref().clone().with_nullable(true), &file.url));
                }
                Some(&i) => {
                    let (field, from) = &mut fields[i];
                    if field.data_type() == f.data_type() {
                        continue;
                    }
                    let Some(wider) = widen(field.data_type(), f.data_type()) else {
                        return Err(Conflict {
                            column: f.name().clone(),
                            file: file.url.clone(),
                            file_type: f.data_type().clone(),
                            other_file: from.to_string(),
                            other_type: field.data_type().clone(),
                        });
                    };
                    if field.data_type() == &DataType::Null {
                        *from = &file.url;
                    }
                    *field = field.clone().with_data_type(wider);
                }
            }
        }
    }
    Ok(Arc::new(Schema::new(
        fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
    )))
}

/// The type both `a` and `b` convert to without losing what they mean:
/// integers and decimals widen (to a float when one side is a float), text
/// stays text, a date and a timestamp become a timestamp. `None` when one is
/// text and the other not, or the kinds differ.
pub(super) fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Null, t) | (t, Null) => Some(t.clone()),
        _ if is_text(a) && is_text(b) => type_union_resolution(&[a.clone(), b.clone()]),
        _ if is_text(a) || is_text(b) => None,
        _ if a.is_numeric() && b.is_numeric() => type_union_resolution(&[a.clone(), b.clone()]),
        (Timestamp(u, z), Timestamp(v, y)) => {
            let unit = if u == v { *u } else { TimeUnit::Microsecond };
            // Naive timestamps are UTC instants (the purchase day is the UTC
            // day); two zones are the same instants shown two ways.
            let zone = if z == y {
                z.clone()
            } else {
                Some("UTC".into())
            };
            Some(Timestamp(unit, zone))
        }
        (Date32 | Date64, Timestamp(..)) => Some(b.clone()),
        (Timestamp(..), Date32 | Date64) => Some(a.clone()),
        (Date32, Date64) | (Date64, Date32) => Some(Date32),
        _ => None,
    }
}

/// Text of any Arrow representation (a dictionary of text included).
pub(crate) fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that fails is a storage fault, a file that does not decode is
    /// bad input: the exit code (1 against 2) depends on telling them apart
    /// (issue 16: a 503 while reading an input's schema exited 2).
    #[tokio::test]
    async fn a_failing_store_is_told_apart_from_a_file_that_does_not_decode() {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::prelude::SessionContext;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        use object_store::ObjectStoreExt;

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        store
            .put(
                &Path::from("bad.parquet"),
                b"not parquet at all".to_vec().into(),
            )
            .await
            .unwrap();
        let bad = store.head(&Path::from("bad.parquet")).await.unwrap();
        let mut gone = bad.clone();
        gone.location = Path::from("gone.csv");
        let none = FileCompressionType::UNCOMPRESSED;
        let state = SessionContext::new().state();
        let csv = CsvOptions::default();
        let e = infer_each(
            &state,
            &store,
            Reader::Csv(&csv),
            &[("gone".into(), gone.clone(), none)],
        )
        .await
        .unwrap_err();
        assert!(matches!(e.1, InferError::Store(_)), "{e:?}");
        let parquet = ParquetFormat::default();
        let e = infer_each(
            &state,
            &store,
            Reader::Parquet(&parquet),
            &[("gone".into(), gone, none)],
        )
        .await
        .unwrap_err();
        assert!(matches!(e.1, InferError::Store(_)), "{e:?}");
        let e = infer_each(
            &state,
            &store,
            Reader::Parquet(&parquet),
            &[("bad".into(), bad, none)],
        )
        .await
        .unwrap_err();
        assert!(matches!(e.1, InferError::Decode(_)), "{e:?}");
    }

    fn file(url: &str, fields: &[(&str, DataType, bool)]) -> FileSchema {
        FileSchema {
            url: url.into(),
            bom: false,
            schema: Arc::new(Schema::new(
                fields
                    .iter()
                    .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                    .collect::<Vec<_>>(),
            )),
        }
    }

    fn names_and_types(s: &Schema) -> Vec<(String, DataType, bool)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect()
    }

    #[test]
    fn union_matches_by_name_and_keeps_first_appearance_order() {
        let a = file(
            "a",
            &[("x", DataType::Int64, false), ("y", DataType::Utf8, true)],
        );
        let b = file(
            "b",
            &[
                ("y", DataType::Utf8, true),
                ("z", DataType::Float64, true),
                ("x", DataType::Int64, true),
            ],
        );
        let u = union(&[a, b]).unwrap();
        assert_eq!(
            names_and_types(&u),
            vec![
                ("x".into(), DataType::Int64, true),
                ("y".into(), DataType::Utf8, true),
                ("z".into(), DataType::Float64, true),
            ]
        );
    }

    #[test]
    fn numbers_widen_in_either_order() {
        for (p, q) in [
            (DataType::Int64, DataType::Float64),
            (DataType::Float64, DataType::Int64),
        ] {
            let u = union(&[file("a", &[("m", p, true)]), file("b", &[("m", q, true)])]).unwrap();
            assert_eq!(u.field(0).data_type(), &DataType::Float64);
        }
        let d = widen(&DataType::Decimal128(10, 2), &DataType::Decimal128(12, 4)).unwrap();
        assert!(
            matches!(d, DataType::Decimal128(p, 4) if p >= 12),
            "decimals widen to the wider: {d}"
        );
        assert_eq!(
            widen(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
    }

    #[test]
    fn null_columns_take_the_other_files_type() {
        for order in [[0, 1], [1, 0]] {
            let files = [
                file("header-only", &[("id", DataType::Null, true)]),
                file("full", &[("id", DataType::Int64, false)]),
            ];
            let u = union(&[files[order[0]].clone(), files[order[1]].clone()]).unwrap();
            assert_eq!(u.field(0).data_type(), &DataType::Int64);
            assert!(u.field(0).is_nullable());
        }
    }

    #[test]
    fn text_against_a_date_or_number_names_both_files() {
        let e = union(&[
            file("f1.parquet", &[("order_ts", DataType::Date32, true)]),
            file("f2.parquet", &[("order_ts", DataType::Utf8, true)]),
        ])
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("order_ts") && msg.contains("f1.parquet") && msg.contains("f2.parquet"),
            "{msg}"
        );
        assert!(widen(&DataType::Utf8, &DataType::Int64).is_none());
        assert!(widen(&DataType::Boolean, &DataType::Int64).is_none());
    }

    #[test]
    fn dates_and_zoned_timestamps_unify_as_instants() {
        let ny = DataType::Timestamp(TimeUnit::Microsecond, Some("America/New_York".into()));
        let naive = DataType::Timestamp(TimeUnit::Nanosecond, None);
        assert_eq!(
            widen(&ny, &naive),
            Some(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            ))
        );
        assert_eq!(widen(&DataType::Date32, &ny), Some(ny.clone()));
        assert_eq!(widen(&ny, &ny), Some(ny));
    }
}
