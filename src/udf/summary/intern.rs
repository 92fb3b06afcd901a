//! Interning: order ids and line keys of any type as dense u32 ids, exact
//! (equal ids if and only if equal values), with the bytes kept once; and
//! the portable form of a line key for partial states.

use std::hash::BuildHasher;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{exec_err, Result};
use foldhash::fast::FixedState;

use super::NAME;

/// Exact interning of byte strings (row-encoded ids and line keys) into
/// dense u32 ids; the bytes live once, in an arena.
#[derive(Debug, Default)]
pub(super) struct Interner {
    table: hashbrown::HashTable<u32>,
    ends: Vec<usize>,
    bytes: Vec<u8>,
    hasher: FixedState,
}

impl Interner {
    pub(super) fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
    pub(super) fn intern(&mut self, b: &[u8]) -> Result<u32> {
        let h = self.hasher.hash_one(b);
        if let Some(&id) = self.table.find(h, |&id| self.get(id) == b) {
            return Ok(id);
        }
        // u32::MAX is the NULL id of a line key field.
        let id = match u32::try_from(self.ends.len()) {
            Ok(id) if id < NULL_ID => id,
            _ => {
                return exec_err!(
                    "{NAME}: more than 2^32 - 1 distinct order ids or line key values"
                )
            }
        };
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len());
        let (ends, bytes, hasher) = (&self.ends, &self.bytes, &self.hasher);
        self.table.insert_unique(h, id, |&id| {
            let i = id as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] };
            hasher.hash_one(&bytes[start..ends[i]])
        });
        Ok(id)
    }
    pub(super) fn size(&self) -> usize {
        self.table.capacity() * 12 + self.ends.capacity() * 8 + self.bytes.capacity()
    }
}

/// Exact ids for the values of one column: text by its bytes, any other
/// type by its arrow row encoding (equal bytes if and only if equal values).
#[derive(Debug)]
pub(super) struct ColumnIds {
    rows: Option<RowConverter>,
    pub(super) interner: Interner,
    /// Short strings of a Utf8View are whole in their 16-byte view: a cache
    /// of view -> id that skips hashing the bytes (low-cardinality fields).
    views: Option<std::collections::HashMap<u128, u32, FixedState>>,
}

impl ColumnIds {
    pub(super) fn new(t: &DataType, cache_views: bool) -> Result<Self> {
        let text = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        Ok(ColumnIds {
            rows: if text {
                None
            } else {
                Some(RowConverter::new(vec![SortField::new(t.clone())])?)
            },
            interner: Interner::default(),
            views: (cache_views && *t == DataType::Utf8View).then(Default::default),
        })
    }

    fn intern(&mut self, v: Option<&[u8]>) -> Result<Option<u32>> {
        v.map(|b| self.interner.intern(b)).transpose()
    }

    /// The id of every value of `a` (None for NULL), appended to `out`.
    pub(super) fn ids(&mut self, a: &ArrayRef, out: &mut Vec<Option<u32>>) -> Result<()> {
        out.reserve(a.len());
        match (&self.rows, a.data_type()) {
            (None, DataType::Utf8) => {
                for v in a.as_string::<i32>().iter() {
                    out.push(self.intern(v.map(str::as_bytes))?);
                }
            }
            (None, DataType::LargeUtf8) => {
                for v in a.as_string::<i64>().iter() {
                    out.push(self.intern(v.map(str::as_bytes))?);
                }
            }
            (None, DataType::Utf8View) => {
                let sv = a.as_string_view();
                for (i, &view) in sv.views().iter().enumerate() {
                    if sv.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    // The low 32 bits of a view are the length; up to 12
                    // bytes, the rest of the view is the string itself.
                    let short = (view as u32) <= 12;
                    if let Some(id) = self
                        .views
                        .as_ref()
                        .filter(|_| short)
                        .and_then(|m| m.get(&view))
                    {
                        out.push(Some(*id));
                        continue;
                    }
                    let id = self.interner.intern(sv.value(i).as_bytes())?;
                    if let (true, Some(m)) = (short, self.views.as_mut()) {
                        m.insert(view, id);
                    }
                    out.push(Some(id));
                }
            }
            (Some(conv), _) => {
                let rows = conv.convert_columns(std::slice::from_ref(a))?;
                let nulls = a.logical_nulls();
                for i in 0..a.len() {
                    let v = if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        None
                    } else {
                        Some(self.interner.intern(rows.row(i).data())?)
                    };
                    out.push(v);
                }
            }
            (None, other) => return exec_err!("{NAME}: unexpected type {other} for a text column"),
        }
        Ok(())
    }

    pub(super) fn size(&self) -> usize {
        self.interner.size() + self.views.as_ref().map_or(0, |m| m.capacity() * 24)
    }
}

/// The line key as a u64: the ids of its struct fields (or of the value,
/// when it is not a struct), packed when there are one or two, interned
/// as a tuple otherwise. None is a NULL struct.
#[derive(Debug)]
pub(super) struct LineKeys {
    parts: Vec<ColumnIds>,
    is_struct: bool,
    tuples: Interner,
}

const NULL_ID: u32 = u32::MAX;

impl LineKeys {
    pub(super) fn new(t: &DataType) -> Result<Self> {
        let (parts, is_struct) = match t {
            DataType::Struct(fields) if !fields.is_empty() => (
                fields
                    .iter()
                    .map(|f| ColumnIds::new(f.data_type(), true))
                    .collect::<Result<_>>()?,
                true,
            ),
            t => (vec![ColumnIds::new(t, true)?], false),
        };
        Ok(LineKeys {
            parts,
            is_struct,
            tuples: Interner::default(),
        })
    }

    fn pack(&mut self, ids: &[u32]) -> Result<u64> {
        Ok(match ids {
            [a] => u64::from(*a),
            [a, b] => (u64::from(*a) << 32) | u64::from(*b),
            many => {
                let bytes: Vec<u8> = many.iter().flat_map(|i| i.to_le_bytes()).collect();
                u64::from(self.tuples.intern(&bytes)?)
            }
        })
    }

    fn unpack(&self, key: u64) -> Vec<u32> {
        match self.parts.len() {
            1 => vec![key as u32],
            2 => vec![(key >> 32) as u32, key as u32],
            _ => self
                .tuples
                .get(key as u32)
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }

    /// Keys of the rows of a line_key argument.
    pub(super) fn keys(&mut self, a: &ArrayRef) -> Result<Vec<Option<u64>>> {
        let columns: Vec<ArrayRef> = if self.is_struct {
            a.as_struct().columns().to_vec()
        } else {
            vec![a.clone()]
        };
        let mut ids: Vec<Vec<Option<u32>>> = Vec::with_capacity(columns.len());
        for (part, col) in self.parts.iter_mut().zip(&columns) {
            let mut v = Vec::with_capacity(a.len());
            part.ids(col, &mut v)?;
            ids.push(v);
        }
        let mut row = vec![0u32; ids.len()];
        (0..a.len())
            .map(|i| {
                if self.is_struct && a.is_null(i) {
                    return Ok(None);
                }
                for (k, v) in ids.iter().enumerate() {
                    row[k] = v[i].unwrap_or(NULL_ID);
                }
                self.pack(&row).map(Some)
            })
            .collect()
    }

    /// The portable form of a key for a partial state: each field as a
    /// NULL marker or its length-prefixed bytes.
    pub(super) fn to_bytes(&self, key: u64, out: &mut Vec<u8>) {
        out.clear();
        for (part, id) in self.parts.iter().zip(self.unpack(key)) {
            if id == NULL_ID {
                out.push(0);
            } else {
                let b = part.interner.get(id);
                out.push(1);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }

    /// The key of [`LineKeys::to_bytes`]'s output, from another accumulator.
    pub(super) fn key_of_bytes(&mut self, mut b: &[u8]) -> Result<u64> {
        let mut ids = Vec::with_capacity(self.parts.len());
        for part in self.parts.iter_mut() {
            match b.split_first() {
                Some((0, rest)) => {
                    ids.push(NULL_ID);
                    b = rest;
                }
                Some((1, rest)) if rest.len() >= 4 => {
                    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    let Some(value) = rest.get(4..4 + n) else {
                        return exec_err!("{NAME}: a truncated line key in a partial state");
                    };
                    ids.push(part.interner.intern(value)?);
                    b = &rest[4 + n..];
                }
                _ => return exec_err!("{NAME}: a malformed line key in a partial state"),
            }
        }
        self.pack(&ids)
    }

    pub(super) fn size(&self) -> usize {
        self.parts.iter().map(ColumnIds::size).sum::<usize>() + self.tuples.size()
    }
}
