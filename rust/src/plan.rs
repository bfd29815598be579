//! From a writer schema and its Arrow type to column builders. Anything this decoder does not
//! handle is refused here, with the reason, before a byte is read: the caller then decodes
//! that group the slow way.

use arrow_schema::DataType;
use serde_json::Value;

use crate::columns::{Col, Enc, Node, Wire};

/// The builders for the records of `avro` (a record schema) as the struct type `arrow`.
/// Top-level fields named in `drop` are read past, not kept.
pub fn compile_top(avro: &Value, arrow: &DataType, drop: &[String]) -> Result<Col, String> {
    let DataType::Struct(fields) = arrow else {
        return Err(format!("expected the records' struct type, got {arrow}"));
    };
    let mut top = compile(avro, arrow)?;
    let Node::Struct(cols) = &mut top.node else {
        unreachable!("a struct type compiles to one")
    };
    for (col, field) in cols.iter_mut().zip(fields.iter()) {
        col.skip = drop.contains(field.name());
    }
    let kept: Vec<_> = fields
        .iter()
        .filter(|f| !drop.contains(f.name()))
        .cloned()
        .collect();
    top.dtype = DataType::Struct(kept.into());
    Ok(top)
}

fn compile(avro: &Value, arrow: &DataType) -> Result<Col, String> {
    if let Value::Array(branches) = avro {
        let mut encs = Vec::with_capacity(branches.len());
        let mut first: Option<&Value> = None;
        for b in branches {
            if b.as_str() == Some("null") {
                encs.push(None);
            } else {
                encs.push(Some(enc(b)?));
                first.get_or_insert(b);
            }
        }
        let node = node(first.unwrap_or(&Value::Null), arrow)?;
        for e in encs.iter().flatten() {
            fits(e, &node)?;
        }
        return Ok(Col::new(arrow.clone(), Wire::Union(encs), node, 1));
    }
    let e = enc(avro)?;
    let node = node(avro, arrow)?;
    fits(&e, &node)?;
    let min = min_size(&e, &node);
    Ok(Col::new(arrow.clone(), Wire::Plain(e), node, min))
}

/// The builder for an Arrow type; nested types take their children from `avro`.
fn node(avro: &Value, arrow: &DataType) -> Result<Node, String> {
    Ok(match arrow {
        DataType::Null => Node::Null(0),
        DataType::Boolean => Node::Bool(Vec::new()),
        DataType::Int32 | DataType::Date32 | DataType::Time32(_) => Node::I32(Vec::new()),
        DataType::Int64 | DataType::Timestamp(..) | DataType::Time64(_) => Node::I64(Vec::new()),
        DataType::Float32 => Node::F32(Vec::new()),
        DataType::Float64 => Node::F64(Vec::new()),
        DataType::Binary | DataType::Utf8 => Node::Bin {
            offsets: vec![0],
            data: Vec::new(),
            utf8: *arrow == DataType::Utf8,
        },
        DataType::FixedSizeBinary(n) => Node::Fixed {
            size: *n as usize,
            data: Vec::new(),
        },
        DataType::Decimal128(..) => Node::Dec(Vec::new()),
        DataType::Struct(fields) => {
            let avro_fields = member(avro, "record", "fields")?
                .as_array()
                .ok_or("a record's fields are not a list")?;
            if avro_fields.len() != fields.len() {
                return Err(format!(
                    "record has {} fields, its Arrow type {}",
                    avro_fields.len(),
                    fields.len()
                ));
            }
            let mut cols = Vec::with_capacity(fields.len());
            for (af, f) in avro_fields.iter().zip(fields.iter()) {
                if af.get("name").and_then(Value::as_str) != Some(f.name().as_str()) {
                    return Err(format!(
                        "field {:?} where Arrow has {:?}",
                        af.get("name"),
                        f.name()
                    ));
                }
                cols.push(compile(
                    af.get("type").ok_or("a field without a type")?,
                    f.data_type(),
                )?);
            }
            Node::Struct(cols)
        }
        DataType::List(item) => Node::List {
            offsets: vec![0],
            child: Box::new(compile(member(avro, "array", "items")?, item.data_type())?),
        },
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(format!("map entries of type {}", entries.data_type()));
            };
            if kv.len() != 2 || *kv[0].data_type() != DataType::Utf8 {
                return Err(format!(
                    "map entries {kv:?}: expected a string key and a value"
                ));
            }
            let keys = Node::Bin {
                offsets: vec![0],
                data: Vec::new(),
                utf8: true,
            };
            Node::Map {
                offsets: vec![0],
                entries: entries.data_type().clone(),
                keys: Box::new(Col::new(DataType::Utf8, Wire::Plain(Enc::String), keys, 1)),
                values: Box::new(compile(member(avro, "map", "values")?, kv[1].data_type())?),
            }
        }
        other => return Err(format!("no compiled decoding into Arrow {other}")),
    })
}

/// `avro[key]` where `avro` is a complex type of kind `kind`.
fn member<'a>(avro: &'a Value, kind: &str, key: &str) -> Result<&'a Value, String> {
    if avro.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(format!("expected an Avro {kind}, got {avro}"));
    }
    avro.get(key)
        .ok_or_else(|| format!("an Avro {kind} without {key:?}"))
}

/// How a (non-union) type is encoded.
fn enc(avro: &Value) -> Result<Enc, String> {
    match avro {
        Value::String(s) => primitive(s),
        Value::Object(o) => match o.get("type") {
            Some(Value::String(t)) => match t.as_str() {
                "record" | "error" => Ok(Enc::Record),
                "array" => Ok(Enc::Array),
                "map" => Ok(Enc::Map),
                "enum" => {
                    let symbols = o
                        .get("symbols")
                        .and_then(Value::as_array)
                        .ok_or("an enum without symbols")?;
                    let symbols = symbols
                        .iter()
                        .map(|s| s.as_str().map(|s| s.as_bytes().to_vec()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("an enum symbol that is not a string")?;
                    Ok(Enc::Enum(symbols))
                }
                "fixed" => {
                    let size = o
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or("fixed without size")?;
                    Ok(Enc::Fixed(size as usize))
                }
                other => primitive(other), // a primitive with a logical type
            },
            _ => Err(format!("unsupported type definition {avro}")),
        },
        _ => Err(format!("unsupported type {avro} (a union inside a union?)")),
    }
}

fn primitive(name: &str) -> Result<Enc, String> {
    Ok(match name {
        "null" => Enc::Null,
        "boolean" => Enc::Boolean,
        "int" => Enc::Int,
        "long" => Enc::Long,
        "float" => Enc::Float,
        "double" => Enc::Double,
        "bytes" => Enc::Bytes,
        "string" => Enc::String,
        other => {
            return Err(format!(
                "named type reference {other:?}: inline named types first"
            ))
        }
    })
}

/// Refuse an encoding the builder cannot take (the Arrow mapping and this decoder disagree).
fn fits(enc: &Enc, node: &Node) -> Result<(), String> {
    let ok = match (enc, node) {
        (Enc::Null, Node::Null(_))
        | (Enc::Boolean, Node::Bool(_))
        | (Enc::Int, Node::I32(_) | Node::I64(_) | Node::F64(_))
        | (Enc::Long, Node::I64(_) | Node::F64(_))
        | (Enc::Float, Node::F32(_) | Node::F64(_))
        | (Enc::Double, Node::F64(_))
        | (Enc::Enum(_), Node::Bin { utf8: true, .. })
        | (Enc::Bytes | Enc::Fixed(_), Node::Dec(_))
        | (Enc::Record, Node::Struct(_))
        | (Enc::Array, Node::List { .. })
        | (Enc::Map, Node::Map { .. }) => true,
        (Enc::Bytes, Node::Bin { utf8, .. }) => !utf8,
        (Enc::String, Node::Bin { utf8, .. }) => *utf8,
        (Enc::Fixed(n), Node::Fixed { size, .. }) => n == size,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{enc:?} values into {node:?}"))
    }
}

fn min_size(enc: &Enc, node: &Node) -> usize {
    match (enc, node) {
        (Enc::Null, _) => 0,
        (Enc::Float, _) => 4,
        (Enc::Double, _) => 8,
        (Enc::Fixed(n), _) => *n,
        (Enc::Record, Node::Struct(cols)) => cols.iter().map(|c| c.min_size).sum(),
        _ => 1,
    }
}
