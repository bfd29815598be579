//! Column builders: one per Arrow column (nested ones hold their children), each knowing how
//! its values are encoded on the wire. A body that fails is rolled back with `truncate`.

use arrow_buffer::{BooleanBuffer, Buffer};
use arrow_data::ArrayData;
use arrow_schema::DataType;

use crate::cursor::Cursor;

/// Block counts of items that take no bytes (nulls, empty records) are capped at this.
const MAX_EMPTY_ITEMS: usize = 1 << 20;

/// How one value is encoded.
#[derive(Clone, Debug)]
pub enum Enc {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Enum(Vec<Vec<u8>>),
    Fixed(usize),
    Record,
    Array,
    Map,
}

/// A column's wire form: one encoding, or a union's branches (`None`: the null branch).
#[derive(Debug)]
pub enum Wire {
    Plain(Enc),
    Union(Vec<Option<Enc>>),
}

impl Wire {
    /// How the next value is encoded: a union's branch is read first (`None`: null).
    #[inline]
    fn encoding(&self, cur: &mut Cursor) -> Result<Option<&Enc>, String> {
        match self {
            Wire::Plain(e) => Ok(Some(e)),
            Wire::Union(branches) => {
                let b = cur.long()?;
                match usize::try_from(b).ok().and_then(|i| branches.get(i)) {
                    None => Err(format!("union branch {b} of {}", branches.len())),
                    Some(branch) => Ok(branch.as_ref()),
                }
            }
        }
    }
}

/// The values of a column, by Arrow layout.
#[derive(Debug)]
pub enum Node {
    Null(usize),
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bin {
        offsets: Vec<i32>,
        data: Vec<u8>,
        utf8: bool,
    },
    Fixed {
        size: usize,
        data: Vec<u8>,
    },
    Dec(Vec<i128>),
    Struct(Vec<Col>),
    List {
        offsets: Vec<i32>,
        child: Box<Col>,
    },
    Map {
        offsets: Vec<i32>,
        entries: DataType,
        keys: Box<Col>,
        values: Box<Col>,
    },
}

#[derive(Debug)]
pub struct Col {
    pub dtype: DataType,
    pub wire: Wire,
    pub node: Node,
    /// The fewest bytes a value takes: bounds the item count of an array block.
    pub min_size: usize,
    /// Read past its values without keeping them (a column the pipeline drops).
    pub skip: bool,
    valid: Vec<bool>,
    nulls: usize,
}

impl Col {
    pub fn new(dtype: DataType, wire: Wire, node: Node, min_size: usize) -> Self {
        Col {
            dtype,
            wire,
            node,
            min_size,
            skip: false,
            valid: Vec::new(),
            nulls: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Read one value (of a union: its branch, then the value).
    #[inline]
    pub fn read(&mut self, cur: &mut Cursor) -> Result<(), String> {
        if self.skip {
            return self.pass(cur);
        }
        let Some(enc) = self.wire.encoding(cur)? else {
            self.push_null();
            return Ok(());
        };
        read_value(&mut self.node, enc, cur)?;
        self.valid.push(true);
        Ok(())
    }

    /// Read past one value, keeping nothing.
    fn pass(&self, cur: &mut Cursor) -> Result<(), String> {
        let Some(enc) = self.wire.encoding(cur)? else {
            return Ok(());
        };
        match (enc, &self.node) {
            (Enc::Null, _) => {}
            (Enc::Boolean, _) => {
                cur.take(1)?;
            }
            (Enc::Int | Enc::Long | Enc::Enum(_), _) => {
                cur.long()?;
            }
            (Enc::Float, _) => {
                cur.take(4)?;
            }
            (Enc::Double, _) => {
                cur.take(8)?;
            }
            (Enc::Bytes | Enc::String, _) => {
                cur.bytes()?;
            }
            (Enc::Fixed(n), _) => {
                cur.take(*n)?;
            }
            (Enc::Record, Node::Struct(cols)) => {
                for c in cols {
                    c.pass(cur)?;
                }
            }
            (Enc::Array, Node::List { child, .. }) => {
                blocks(cur, child.min_size, |c| child.pass(c))?
            }
            (Enc::Map, Node::Map { keys, values, .. }) => {
                blocks(cur, keys.min_size + values.min_size, |c| {
                    keys.pass(c)?;
                    values.pass(c)
                })?
            }
            (enc, node) => {
                return Err(format!(
                    "internal: {enc:?} values do not fit a {} column",
                    kind(node)
                ))
            }
        }
        Ok(())
    }

    /// A null here; nested columns get null placeholders so every child keeps its length.
    pub fn push_null(&mut self) {
        self.valid.push(false);
        self.nulls += 1;
        match &mut self.node {
            Node::Null(n) => *n += 1,
            Node::Bool(v) => v.push(false),
            Node::I32(v) => v.push(0),
            Node::I64(v) => v.push(0),
            Node::F32(v) => v.push(0.0),
            Node::F64(v) => v.push(0.0),
            Node::Dec(v) => v.push(0),
            Node::Bin { offsets, .. } | Node::List { offsets, .. } | Node::Map { offsets, .. } => {
                offsets.push(*offsets.last().unwrap_or(&0))
            }
            Node::Fixed { size, data } => data.resize(data.len() + *size, 0),
            Node::Struct(cols) => cols.iter_mut().for_each(Col::push_null),
        }
    }

    /// Make room for `factor` times what is here, so the buffers do not grow (and copy
    /// themselves) step by step: called once the first bodies of a batch are in.
    pub fn reserve_scaled(&mut self, factor: usize) {
        fn grow<T>(v: &mut Vec<T>, factor: usize) {
            v.reserve(v.len().saturating_mul(factor.saturating_sub(1)));
        }
        grow(&mut self.valid, factor);
        match &mut self.node {
            Node::Null(_) => {}
            Node::Bool(v) => grow(v, factor),
            Node::I32(v) => grow(v, factor),
            Node::I64(v) => grow(v, factor),
            Node::F32(v) => grow(v, factor),
            Node::F64(v) => grow(v, factor),
            Node::Dec(v) => grow(v, factor),
            Node::Bin { offsets, data, .. } => {
                grow(offsets, factor);
                grow(data, factor);
            }
            Node::Fixed { data, .. } => grow(data, factor),
            Node::Struct(cols) => cols.iter_mut().for_each(|c| c.reserve_scaled(factor)),
            Node::List { offsets, child } => {
                grow(offsets, factor);
                child.reserve_scaled(factor);
            }
            Node::Map {
                offsets,
                keys,
                values,
                ..
            } => {
                grow(offsets, factor);
                keys.reserve_scaled(factor);
                values.reserve_scaled(factor);
            }
        }
    }

    /// Back to `n` values, dropping what a failed body appended.
    /// A body that failed half-way leaves children longer than their parent: every level is
    /// cut back, whatever its own length.
    pub fn truncate(&mut self, n: usize) {
        if self.valid.len() > n {
            self.nulls -= self.valid[n..].iter().filter(|v| !**v).count();
            self.valid.truncate(n);
        }
        match &mut self.node {
            Node::Null(len) => *len = n,
            Node::Bool(v) => v.truncate(n),
            Node::I32(v) => v.truncate(n),
            Node::I64(v) => v.truncate(n),
            Node::F32(v) => v.truncate(n),
            Node::F64(v) => v.truncate(n),
            Node::Dec(v) => v.truncate(n),
            Node::Bin { offsets, data, .. } => {
                offsets.truncate(n + 1);
                data.truncate(offsets[n] as usize);
            }
            Node::Fixed { size, data } => data.truncate(n * *size),
            Node::Struct(cols) => cols.iter_mut().for_each(|c| c.truncate(n)),
            Node::List { offsets, child } => {
                offsets.truncate(n + 1);
                child.truncate(offsets[n] as usize);
            }
            Node::Map {
                offsets,
                keys,
                values,
                ..
            } => {
                offsets.truncate(n + 1);
                keys.truncate(offsets[n] as usize);
                values.truncate(offsets[n] as usize);
            }
        }
    }

    /// The column as Arrow data (validated by arrow-rs).
    pub fn finish(self) -> Result<ArrayData, String> {
        let n = self.valid.len();
        let nulls = (self.nulls > 0 && self.dtype != DataType::Null)
            .then(|| BooleanBuffer::from(self.valid.as_slice()).into_inner());
        let b = ArrayData::builder(self.dtype).len(n).null_bit_buffer(nulls);
        let b = match self.node {
            Node::Null(_) => b,
            Node::Bool(v) => b.add_buffer(BooleanBuffer::from(v.as_slice()).into_inner()),
            Node::I32(v) => b.add_buffer(Buffer::from_vec(v)),
            Node::I64(v) => b.add_buffer(Buffer::from_vec(v)),
            Node::F32(v) => b.add_buffer(Buffer::from_vec(v)),
            Node::F64(v) => b.add_buffer(Buffer::from_vec(v)),
            Node::Dec(v) => b.add_buffer(Buffer::from_vec(v)),
            Node::Bin { offsets, data, .. } => b
                .add_buffer(Buffer::from_vec(offsets))
                .add_buffer(Buffer::from_vec(data)),
            Node::Fixed { data, .. } => b.add_buffer(Buffer::from_vec(data)),
            Node::Struct(cols) => {
                let kept = cols.into_iter().filter(|c| !c.skip);
                b.child_data(kept.map(Col::finish).collect::<Result<_, _>>()?)
            }
            Node::List { offsets, child } => b
                .add_buffer(Buffer::from_vec(offsets))
                .child_data(vec![child.finish()?]),
            Node::Map {
                offsets,
                entries,
                keys,
                values,
            } => {
                let len = keys.len();
                let entries = ArrayData::builder(entries)
                    .len(len)
                    .child_data(vec![keys.finish()?, values.finish()?])
                    .build()
                    .map_err(|e| e.to_string())?;
                b.add_buffer(Buffer::from_vec(offsets))
                    .child_data(vec![entries])
            }
        };
        b.build()
            .map_err(|e| format!("decoded column does not form valid Arrow data: {e}"))
    }
}

fn offset(n: usize) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| "a column passed 2 GiB in one batch: use smaller batches".into())
}

#[inline]
fn read_value(node: &mut Node, enc: &Enc, cur: &mut Cursor) -> Result<(), String> {
    match (node, enc) {
        (Node::Null(n), Enc::Null) => *n += 1,
        (Node::Bool(v), Enc::Boolean) => match cur.take(1)?[0] {
            0 => v.push(false),
            1 => v.push(true),
            b => return Err(format!("boolean byte {b}, expected 0 or 1")),
        },
        (Node::I32(v), Enc::Int) => v.push(cur.int()?),
        (Node::I64(v), Enc::Int) => v.push(i64::from(cur.int()?)),
        (Node::I64(v), Enc::Long) => v.push(cur.long()?),
        (Node::F32(v), Enc::Float) => v.push(f32::from_le_bytes(cur.fixed::<4>()?)),
        (Node::F64(v), Enc::Double) => v.push(f64::from_le_bytes(cur.fixed::<8>()?)),
        (Node::F64(v), Enc::Float) => v.push(f64::from(f32::from_le_bytes(cur.fixed::<4>()?))),
        (Node::F64(v), Enc::Int) => v.push(f64::from(cur.int()?)),
        (Node::F64(v), Enc::Long) => v.push(cur.long()? as f64),
        (
            Node::Bin {
                offsets,
                data,
                utf8,
            },
            Enc::Bytes | Enc::String,
        ) => {
            let s = cur.bytes()?;
            if *utf8 {
                std::str::from_utf8(s).map_err(|e| format!("string is not UTF-8: {e}"))?;
            }
            data.extend_from_slice(s);
            offsets.push(offset(data.len())?);
        }
        (Node::Bin { offsets, data, .. }, Enc::Enum(symbols)) => {
            let i = cur.long()?;
            let s = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| format!("enum index {i} of {} symbols", symbols.len()))?;
            data.extend_from_slice(s);
            offsets.push(offset(data.len())?);
        }
        (Node::Fixed { size, data }, Enc::Fixed(n)) if n == size => {
            data.extend_from_slice(cur.take(*n)?)
        }
        (Node::Dec(v), Enc::Bytes) => v.push(be_i128(cur.bytes()?)?),
        (Node::Dec(v), Enc::Fixed(n)) => v.push(be_i128(cur.take(*n)?)?),
        (Node::Struct(cols), Enc::Record) => {
            for c in cols.iter_mut() {
                c.read(cur)?;
            }
        }
        (Node::List { offsets, child }, Enc::Array) => {
            let min = child.min_size;
            blocks(cur, min, |cur| child.read(cur))?;
            offsets.push(offset(child.len())?);
        }
        (
            Node::Map {
                offsets,
                keys,
                values,
                ..
            },
            Enc::Map,
        ) => {
            let min = keys.min_size + values.min_size;
            blocks(cur, min, |cur| {
                keys.read(cur)?;
                values.read(cur)
            })?;
            offsets.push(offset(keys.len())?);
        }
        (node, enc) => {
            return Err(format!(
                "internal: {enc:?} values do not fit a {} column",
                kind(node)
            ))
        }
    }
    Ok(())
}

/// An array's or map's blocks: a count (negative: followed by the block's size in bytes),
/// that many items, until a zero count. No block may claim more items than its bytes hold.
#[inline]
fn blocks(
    cur: &mut Cursor,
    min_size: usize,
    mut item: impl FnMut(&mut Cursor) -> Result<(), String>,
) -> Result<(), String> {
    loop {
        let mut n = cur.long()?;
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            n = n.checked_neg().ok_or("array block count out of range")?;
            cur.long()?; // the block's size in bytes
        }
        let cap = cur
            .remaining()
            .checked_div(min_size)
            .unwrap_or(MAX_EMPTY_ITEMS);
        let n = usize::try_from(n).map_err(|_| "array block count out of range")?;
        if n > cap {
            return Err(format!(
                "array block of {n} items, but only {} bytes are left",
                cur.remaining()
            ));
        }
        for _ in 0..n {
            item(cur)?;
        }
    }
}

/// A decimal's unscaled value: big-endian two's complement, at most 16 bytes.
fn be_i128(s: &[u8]) -> Result<i128, String> {
    if s.len() > 16 {
        return Err(format!(
            "decimal of {} bytes does not fit 128 bits",
            s.len()
        ));
    }
    let fill = if s.first().is_some_and(|b| b & 0x80 != 0) {
        0xFF
    } else {
        0
    };
    let mut out = [fill; 16];
    out[16 - s.len()..].copy_from_slice(s);
    Ok(i128::from_be_bytes(out))
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Null(_) => "null",
        Node::Bool(_) => "boolean",
        Node::I32(_) => "int32",
        Node::I64(_) => "int64",
        Node::F32(_) => "float32",
        Node::F64(_) => "float64",
        Node::Bin { .. } => "binary",
        Node::Fixed { .. } => "fixed-size binary",
        Node::Dec(_) => "decimal",
        Node::Struct(_) => "struct",
        Node::List { .. } => "list",
        Node::Map { .. } => "map",
    }
}
