//! The CSV dialect of an input: the options of `[inputs.NAME.csv]` and
//! `--csv NAME.OPTION=VALUE` checked ([`CsvOptions`]), one file's header and
//! first records read with them, DataFusion's `CsvFormat` built from them,
//! and a file in another encoding transcoded to UTF-8 before DataFusion
//! reads it (DataFusion's CSV reader knows UTF-8 only).

use std::io::Read;
use std::sync::Arc;

use datafusion::arrow::csv::reader::Format as CsvInference;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use encoding_rs::Encoding;

use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::job::CsvSpec;

/// CSV records sampled per file to infer its column types.
pub(super) const CSV_SAMPLE_RECORDS: usize = 100;

/// The UTF-8 byte order mark some exports (Excel's "CSV UTF-8") start with.
const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// An input's CSV dialect, checked. The default is a UTF-8 file with a
/// header, `,` between values, `"` around them, no escape character,
/// compression by extension and quoted newlines allowed.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The byte between values.
    pub delimiter: u8,
    /// The byte around a value holding a delimiter, quote or newline.
    pub quote: u8,
    /// The byte escaping a quote inside a quoted value; `None`: doubled quotes.
    pub escape: Option<u8>,
    /// The first line names the columns.
    pub header: bool,
    /// Column names of a file without a header (`None`: `column_1`..`column_N`).
    pub names: Option<Vec<String>>,
    /// Amounts are written with a decimal comma (`12,50`).
    pub decimal_comma: bool,
    /// The files' character encoding; anything but UTF-8 is transcoded.
    pub encoding: &'static Encoding,
    /// The files' compression; `None`: each file's by its extension.
    pub compression: Option<FileCompressionType>,
    /// Quoted values may hold newlines: each file is parsed whole.
    pub newlines_in_values: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            escape: None,
            header: true,
            names: None,
            decimal_comma: false,
            encoding: encoding_rs::UTF_8,
            compression: None,
            newlines_in_values: true,
        }
    }
}

impl CsvOptions {
    /// Check the options of input (or table) `input` as written.
    ///
    /// Errors: [`Error::InputOption`] naming the input, the option and the
    /// value: a delimiter, quote or escape that is not one ASCII character,
    /// two of them equal, a decimal other than `.` or `,`, an encoding no
    /// WHATWG label names, a compression custval does not know, `names`
    /// with a header or with an empty or repeated name.
    pub fn resolve(input: &str, spec: &CsvSpec) -> Result<CsvOptions> {
        let bad = |option: &str, value: &str, message: String| Error::InputOption {
            input: input.to_string(),
            option: option.to_string(),
            value: value.to_string(),
            message,
        };
        let decimal_comma = match spec.decimal.as_deref() {
            None | Some(".") => false,
            Some(",") => true,
            Some(v) => return Err(bad("decimal", v, "must be \".\" or \",\"".into())),
        };
        let byte = |option: &str, value: &Option<String>| -> Result<Option<u8>> {
            value
                .as_deref()
                .map(|v| one_ascii(v).map_err(|m| bad(option, v, m)))
                .transpose()
        };
        // A decimal comma comes with `;` between values (Excel in most of
        // Europe), unless the job says otherwise.
        let default_delimiter = if decimal_comma { b';' } else { b',' };
        let delimiter = byte("delimiter", &spec.delimiter)?.unwrap_or(default_delimiter);
        let quote = byte("quote", &spec.quote)?.unwrap_or(b'"');
        let escape = byte("escape", &spec.escape)?;
        if quote == delimiter {
            let v = spec.quote.clone().unwrap_or_default();
            return Err(bad("quote", &v, "must differ from the delimiter".into()));
        }
        if escape == Some(delimiter) {
            let v = spec.escape.clone().unwrap_or_default();
            return Err(bad("escape", &v, "must differ from the delimiter".into()));
        }
        let header = spec.header.unwrap_or(true);
        if let Some(names) = &spec.names {
            let shown = names.join(",");
            if header {
                return Err(bad(
                    "names",
                    &shown,
                    "names the columns of files without a header: add header = false".into(),
                ));
            }
            for (i, n) in names.iter().enumerate() {
                if n.trim().is_empty() || names[..i].contains(n) {
                    return Err(bad(
                        "names",
                        &shown,
                        format!("column {} is empty or repeated: {n:?}", i + 1),
                    ));
                }
            }
        }
        let encoding = match spec.encoding.as_deref() {
            None => encoding_rs::UTF_8,
            Some(label) => encoding_for(label).ok_or_else(|| {
                bad(
                    "encoding",
                    label,
                    "unknown encoding; use utf-8, latin-1, windows-1252, utf-16le, utf-16be \
                     or another WHATWG encoding label"
                        .into(),
                )
            })?,
        };
        let compression = spec
            .compression
            .as_deref()
            .map(|c| {
                compression_named(c).ok_or_else(|| {
                    bad(
                        "compression",
                        c,
                        "must be gzip, zstd, bzip2, xz or none".into(),
                    )
                })
            })
            .transpose()?;
        Ok(CsvOptions {
            delimiter,
            quote,
            escape,
            header,
            names: spec.names.clone(),
            decimal_comma,
            encoding,
            compression,
            newlines_in_values: spec.newlines_in_values.unwrap_or(true),
        })
    }

    /// The compression of the file at `path`: the option, else by its
    /// extension (`.gz`, `.zst`, `.bz2`, `.xz`), else none.
    pub(super) fn compression_of(&self, path: &str) -> FileCompressionType {
        self.compression.unwrap_or_else(|| {
            compression_by_extension(path).unwrap_or(FileCompressionType::UNCOMPRESSED)
        })
    }

    /// Files must be transcoded to UTF-8 before DataFusion reads them.
    pub(super) fn transcodes(&self) -> bool {
        self.encoding != encoding_rs::UTF_8
    }

    /// DataFusion's reader of files with this dialect and `compression`.
    pub(super) fn format(&self, compression: FileCompressionType) -> CsvFormat {
        CsvFormat::default()
            .with_has_header(self.header)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote)
            .with_escape(self.escape)
            .with_newlines_in_values(self.newlines_in_values)
            .with_file_compression_type(compression)
    }

    fn inference(&self) -> CsvInference {
        let f = CsvInference::default()
            .with_header(self.header)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote);
        match self.escape {
            Some(e) => f.with_escape(e),
            None => f,
        }
    }

    /// The column names of a file without a header: `names`, or Arrow's
    /// `column_1`..`column_N`. Errors when `names` has another count.
    fn named(&self, schema: Schema) -> std::result::Result<Schema, String> {
        let Some(names) = self.names.as_ref().filter(|_| !self.header) else {
            return Ok(schema);
        };
        if names.len() != schema.fields().len() {
            return Err(format!(
                "the file has {} columns but the names option lists {}",
                schema.fields().len(),
                names.len()
            ));
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .zip(names)
            .map(|(f, n)| f.as_ref().clone().with_name(n))
            .collect();
        Ok(Schema::new(fields))
    }
}

/// A delimiter, quote or escape: one ASCII character (`tab` or `\t` for
/// a tab), not a line break.
fn one_ascii(v: &str) -> std::result::Result<u8, String> {
    if v == "tab" || v == "\\t" {
        return Ok(b'\t');
    }
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() && c != '\n' && c != '\r' => Ok(c as u8),
        (Some(c), None) if c.is_ascii() => Err("a line break cannot separate values".into()),
        (Some(_), None) => Err("must be an ASCII character".into()),
        (None, _) => Err("must be one character, got none".into()),
        _ => Err(format!("must be one character, got {}", v.chars().count())),
    }
}

/// The encoding a label names: WHATWG labels (`latin1`, `iso-8859-1`,
/// `windows-1252`, `utf-16le`), also written with `_` or an extra `-`
/// (`latin-1`, `utf_8`). Latin-1 is decoded as windows-1252, its superset,
/// as browsers do.
fn encoding_for(label: &str) -> Option<&'static Encoding> {
    let l = label.trim().to_ascii_lowercase().replace('_', "-");
    Encoding::for_label(l.as_bytes())
        .or_else(|| Encoding::for_label(l.replace('-', "").as_bytes()))
        .or_else(|| (l == "utf-16").then_some(encoding_rs::UTF_16LE))
}

fn compression_named(name: &str) -> Option<FileCompressionType> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "gzip" | "gz" => FileCompressionType::GZIP,
        "zstd" | "zst" => FileCompressionType::ZSTD,
        "bzip2" | "bz2" => FileCompressionType::BZIP2,
        "xz" => FileCompressionType::XZ,
        "none" | "uncompressed" => FileCompressionType::UNCOMPRESSED,
        _ => return None,
    })
}

/// The compression a file name's last extension says, if any.
pub(super) fn compression_by_extension(path: &str) -> Option<FileCompressionType> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = name.rsplit_once('.')?;
    match ext.to_ascii_lowercase().as_str() {
        "gz" | "gzip" => Some(FileCompressionType::GZIP),
        "zst" | "zstd" => Some(FileCompressionType::ZSTD),
        "bz2" => Some(FileCompressionType::BZIP2),
        "xz" => Some(FileCompressionType::XZ),
        _ => None,
    }
}

/// Why a file's schema could not be read: the store failed (a storage
/// fault: exit 1, retrying may help) or the file is not what its format
/// says (bad input: exit 2).
#[derive(Debug)]
pub(super) enum InferError {
    /// The object store's request failed.
    Store(object_store::Error),
    /// The bytes do not decode as the format.
    Decode(String),
}

/// A CSV file's schema read with `opts`, and whether it starts with a UTF-8
/// byte order mark (skipped, so the first header name is clean). Read
/// through Arrow's CSV reader, which follows quotes across lines (DataFusion
/// 55 cuts the sample into newline-delimited chunks first and loses a quoted
/// newline that straddles a read chunk). Only as much of the file is read
/// (and decompressed) as the sample needs. A column with no value in the
/// sample is `Null`.
pub(super) async fn infer(
    store: Arc<dyn ObjectStore>,
    meta: ObjectMeta,
    compression: FileCompressionType,
    opts: &CsvOptions,
) -> std::result::Result<(SchemaRef, bool), InferError> {
    let stream = store
        .get(&meta.location)
        .await
        .map_err(InferError::Store)?
        .into_stream();
    let handle = tokio::runtime::Handle::current();
    let again = opts.clone();
    let opts = opts.clone();
    let read = tokio::task::spawn_blocking(move || {
        let raw = compression
            .convert_read(BlockingRead::new(stream, handle))
            .map_err(|e| e.to_string())?;
        let (bom, reader) = skip_bom(raw).map_err(|e| format!("cannot read the file: {e}"))?;
        let (schema, _) = opts
            .inference()
            .infer_schema(reader, Some(CSV_SAMPLE_RECORDS))
            .map_err(|e| e.to_string())?;
        Ok((Arc::new(opts.named(schema)?), bom))
    })
    .await
    .map_err(|e| format!("reading the CSV header failed: {e}"));
    match read.and_then(|r| r) {
        Ok(found) => Ok(found),
        Err(m) if m.contains("unequal lengths") => Err(InferError::Decode(
            with_physical_line(store, meta, compression, again, m).await,
        )),
        Err(m) => Err(InferError::Decode(m)),
    }
}

/// A ragged-record message with the physical line of the first record
/// whose field count differs from the first record's (1-based, the header
/// counted), read again from the file: the CSV parser's own line number
/// is one short in a file with CRLF line ends. The message as it was when
/// the file cannot be read again.
async fn with_physical_line(
    store: Arc<dyn ObjectStore>,
    meta: ObjectMeta,
    compression: FileCompressionType,
    opts: CsvOptions,
    message: String,
) -> String {
    let Ok(got) = store.get(&meta.location).await else {
        return message;
    };
    let stream = got.into_stream();
    let handle = tokio::runtime::Handle::current();
    let line = tokio::task::spawn_blocking(move || {
        let raw = compression
            .convert_read(BlockingRead::new(stream, handle))
            .ok()?;
        let (_, reader) = skip_bom(raw).ok()?;
        first_ragged_line(reader, &opts)
    })
    .await
    .ok()
    .flatten();
    match (line, message.rfind(" at line ")) {
        (Some(line), Some(at)) => {
            let rest = &message[at + " at line ".len()..];
            let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{} at line {line}{tail}", &message[..at])
        }
        _ => message,
    }
}

/// The physical line (1-based) of the first record whose field count
/// differs from the first record's; `None` when all agree or the text does
/// not parse.
fn first_ragged_line(r: impl Read, opts: &CsvOptions) -> Option<u64> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let tee = Tee {
        inner: r,
        seen: std::rc::Rc::clone(&seen),
    };
    let mut builder = csv::ReaderBuilder::new();
    builder
        .has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote);
    if let Some(e) = opts.escape {
        builder.escape(Some(e)).double_quote(false);
    }
    let mut reader = builder.from_reader(tee);
    let mut record = csv::ByteRecord::new();
    let mut expected = None;
    while reader.read_byte_record(&mut record).ok()? {
        let n = record.len();
        if *expected.get_or_insert(n) == n {
            continue;
        }
        let bytes = seen.borrow();
        // The record starts past any line end the parser left before it.
        let mut at = usize::try_from(record.position()?.byte()).ok()?;
        while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        let newlines = bytes[..at.min(bytes.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        return u64::try_from(newlines + 1).ok();
    }
    None
}

/// A reader that keeps a copy of every byte read through it.
struct Tee<R> {
    inner: R,
    seen: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Whether `r` starts with a UTF-8 byte order mark, and `r` after it.
fn skip_bom<R: Read + Send + 'static>(mut r: R) -> std::io::Result<(bool, Box<dyn Read + Send>)> {
    let mut head = Vec::with_capacity(3);
    (&mut r).take(3).read_to_end(&mut head)?;
    if head == UTF8_BOM {
        Ok((true, Box::new(r)))
    } else {
        Ok((false, Box::new(std::io::Cursor::new(head).chain(r))))
    }
}

/// Write `meta` from `store` decompressed and as UTF-8 without a byte order
/// mark to `dest` on `dest_store`, and return the copy's metadata. A byte
/// order mark overrides `encoding` (a UTF-16 file says which); bytes that
/// are invalid in the encoding become U+FFFD.
pub(super) async fn transcode(
    store: Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    compression: FileCompressionType,
    encoding: &'static Encoding,
    dest_store: Arc<dyn ObjectStore>,
    dest: object_store::path::Path,
) -> std::result::Result<ObjectMeta, String> {
    let stream = store
        .get(&meta.location)
        .await
        .map_err(|e| e.to_string())?
        .into_stream();
    let handle = tokio::runtime::Handle::current();
    let mut writer = object_store::buffered::BufWriter::new(Arc::clone(&dest_store), dest.clone());
    tokio::task::spawn_blocking(move || -> std::result::Result<(), String> {
        let raw = compression
            .convert_read(BlockingRead::new(stream, handle.clone()))
            .map_err(|e| e.to_string())?;
        let mut decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
            .encoding(Some(encoding))
            .bom_override(true)
            .strip_bom(true)
            .build(raw);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = decoded
                .read(&mut buf)
                .map_err(|e| format!("cannot decode it as {}: {e}", encoding.name()))?;
            if n == 0 {
                break;
            }
            handle
                .block_on(writer.write_all(&buf[..n]))
                .map_err(|e| format!("writing its UTF-8 copy failed: {e}"))?;
        }
        handle
            .block_on(writer.shutdown())
            .map_err(|e| format!("writing its UTF-8 copy failed: {e}"))
    })
    .await
    .map_err(|e| format!("transcoding failed: {e}"))??;
    dest_store.head(&dest).await.map_err(|e| e.to_string())
}

/// `Read` over an object-store byte stream, for the synchronous CSV reader
/// and decoders on a blocking thread.
struct BlockingRead<S> {
    stream: S,
    handle: tokio::runtime::Handle,
    chunk: Vec<u8>,
    at: usize,
}

impl<S> BlockingRead<S> {
    fn new(stream: S, handle: tokio::runtime::Handle) -> Self {
        BlockingRead {
            stream,
            handle,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl<S, B> Read for BlockingRead<S>
where
    S: futures::Stream<Item = object_store::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(b)) => {
                    self.chunk.clear();
                    self.chunk.extend_from_slice(b.as_ref());
                    self.at = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trial's file: a header, 19 records, a ragged one on physical
    /// line 21 (counted by hand), then more; with CRLF or LF line ends, and
    /// with a quoted newline before it (one record, two lines: line 22).
    #[test]
    fn a_ragged_record_is_found_on_its_physical_line() {
        let mut lines = vec!["customer_id,order_id,order_ts,amount".to_string()];
        for i in 0..19 {
            lines.push(format!("C{i},O{i},2024-08-06T10:46:01,36.57"));
        }
        lines.push("C1,O999,2024-05-01T10:00:00,12.0,EXTRA".into());
        lines.push("C29,O177,2024-08-30T07:39:41,20.63".into());
        let opts = CsvOptions::default();
        for end in ["\r\n", "\n"] {
            let text = lines.join(end) + end;
            assert_eq!(
                first_ragged_line(text.as_bytes(), &opts),
                Some(21),
                "{end:?}"
            );
        }
        let mut quoted = lines.clone();
        quoted[3] = "C2,\"O2\nsecond line\",2024-08-06T10:46:01,1.0".into();
        let text = quoted.join("\r\n") + "\r\n";
        assert_eq!(first_ragged_line(text.as_bytes(), &opts), Some(22));
        let even = lines[..20].join("\n");
        assert_eq!(first_ragged_line(even.as_bytes(), &opts), None);
    }

    fn spec(f: impl FnOnce(&mut CsvSpec)) -> CsvSpec {
        let mut s = CsvSpec::default();
        f(&mut s);
        s
    }

    fn err(s: &CsvSpec) -> String {
        CsvOptions::resolve("tx", s).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_a_plain_utf8_csv_with_a_header() {
        let o = CsvOptions::resolve("tx", &CsvSpec::default()).unwrap();
        assert_eq!((o.delimiter, o.quote, o.escape), (b',', b'"', None));
        assert!(o.header && o.newlines_in_values && !o.decimal_comma && !o.transcodes());
    }

    #[test]
    fn a_decimal_comma_defaults_to_semicolons_unless_told() {
        let o = CsvOptions::resolve("tx", &spec(|s| s.decimal = Some(",".into()))).unwrap();
        assert_eq!(o.delimiter, b';');
        let o = CsvOptions::resolve(
            "tx",
            &spec(|s| {
                s.decimal = Some(",".into());
                s.delimiter = Some("tab".into());
            }),
        )
        .unwrap();
        assert_eq!(o.delimiter, b'\t');
    }

    #[test]
    fn bad_options_name_the_input_option_and_value() {
        let e = err(&spec(|s| s.delimiter = Some(";;".into())));
        assert!(
            e.contains("input tx") && e.contains("delimiter") && e.contains("\";;\""),
            "{e}"
        );
        let e = err(&spec(|s| s.encoding = Some("klingon".into())));
        assert!(e.contains("encoding") && e.contains("klingon"), "{e}");
        let e = err(&spec(|s| s.quote = Some(",".into())));
        assert!(e.contains("quote"), "{e}");
        let e = err(&spec(|s| s.names = Some(vec!["a".into()])));
        assert!(e.contains("header = false"), "{e}");
        let e = err(&spec(|s| s.compression = Some("rar".into())));
        assert!(e.contains("compression") && e.contains("rar"), "{e}");
        let e = err(&spec(|s| s.decimal = Some(";".into())));
        assert!(e.contains("decimal"), "{e}");
    }

    #[test]
    fn encodings_by_their_common_names() {
        for (label, want) in [
            ("latin-1", encoding_rs::WINDOWS_1252),
            ("ISO-8859-1", encoding_rs::WINDOWS_1252),
            ("windows-1252", encoding_rs::WINDOWS_1252),
            ("utf-16", encoding_rs::UTF_16LE),
            ("UTF-16BE", encoding_rs::UTF_16BE),
            ("utf_8", encoding_rs::UTF_8),
        ] {
            assert_eq!(encoding_for(label), Some(want), "{label}");
        }
    }

    #[test]
    fn compression_by_name_or_extension() {
        assert_eq!(
            compression_by_extension("a/b.csv.gz"),
            Some(FileCompressionType::GZIP)
        );
        assert_eq!(
            compression_by_extension("b.csv.zst"),
            Some(FileCompressionType::ZSTD)
        );
        assert_eq!(compression_by_extension("b.csv"), None);
        let o = CsvOptions::resolve("tx", &spec(|s| s.compression = Some("bzip2".into()))).unwrap();
        assert_eq!(o.compression_of("x.csv"), FileCompressionType::BZIP2);
    }
}
