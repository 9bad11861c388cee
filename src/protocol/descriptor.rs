//! Item descriptors (item 0x5): what an item is called and how its bytes are
//! laid out, either as a SPEAD format list or as a numpy dtype. The encoded
//! value is itself a complete SPEAD packet, byte for byte as spead2 makes it.

use std::fmt::Write as _;

use thiserror::Error;

use super::decoder::{decode_items, DecodeError, ItemExtent, PacketInfo};
use super::flavour::{item_id, Flavour, POINTER_SIZE};
use super::wire::{Packet, HEADER_LEN};

/// One field of a SPEAD format list: a type code and a width in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FormatField {
    /// Type code: `u` unsigned, `i` signed, `f` float, `b` bool, `c` char.
    pub code: u8,
    /// Width in bits.
    pub bits: u64,
}

impl FormatField {
    /// A field with the given type code and width.
    pub const fn new(code: u8, bits: u64) -> Self {
        FormatField { code, bits }
    }
}

/// A numpy dtype as a normalised type string (`'<u2'`, `'|u1'`, `'>f8'`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NumpyDtype {
    descr: String,
}

impl NumpyDtype {
    /// Validates and normalises a numpy type string the way
    /// `numpy.lib.format.dtype_to_descr(numpy.dtype(s))` does for simple
    /// dtypes: a missing or native (`=`) byte order becomes this machine's,
    /// one-byte and byte-string types take `|`.
    pub fn new(dtype: &str) -> Result<Self, DescriptorError> {
        let bad = || DescriptorError::Dtype(dtype.to_owned());
        let (order, rest) = match dtype.as_bytes().first() {
            Some(b @ (b'<' | b'>' | b'|' | b'=')) => (Some(*b), &dtype[1..]),
            _ => (None, dtype),
        };
        let mut chars = rest.chars();
        let kind = chars.next().ok_or_else(bad)?;
        let size_text = chars.as_str();
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let size: u64 = size_text.parse().map_err(|_| bad())?;
        if size == 0 {
            return Err(bad());
        }
        let valid_size = match kind {
            'b' => size == 1,
            'i' | 'u' => [1, 2, 4, 8].contains(&size),
            'f' => [2, 4, 8, 16].contains(&size),
            'c' => [8, 16, 32].contains(&size),
            'S' | 'V' | 'U' => true,
            _ => false,
        };
        if !valid_size {
            return Err(bad());
        }
        let order_free = matches!(kind, 'S' | 'V') || (size == 1 && kind != 'U');
        let native = if cfg!(target_endian = "little") { '<' } else { '>' };
        let order = if order_free {
            '|'
        } else {
            match order {
                Some(b'<') => '<',
                Some(b'>') => '>',
                _ => native,
            }
        };
        Ok(NumpyDtype {
            descr: format!("{order}{kind}{size}"),
        })
    }

    /// The normalised type string.
    pub fn as_str(&self) -> &str {
        &self.descr
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> u64 {
        let size: u64 = self.descr[2..].parse().expect("validated size");
        if self.descr.as_bytes()[1] == b'U' {
            size * 4
        } else {
            size
        }
    }
}

/// How an item's bytes are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataType {
    /// A SPEAD format list (C order).
    Format(Vec<FormatField>),
    /// A numpy dtype, in C or Fortran order.
    Numpy {
        /// Element type.
        dtype: NumpyDtype,
        /// True for Fortran (column-major) order.
        fortran_order: bool,
    },
}

/// What is wrong with a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DescriptorError {
    /// The described item's ID cannot be carried by the flavour.
    #[error("descriptor item ID {id:#x} is out of range 0x1..={max:#x}")]
    ItemId {
        /// Offending ID.
        id: u64,
        /// Largest ID of the flavour.
        max: u64,
    },
    /// Not a numpy type string this crate understands.
    #[error("unsupported numpy dtype {0:?} (expected a simple type string such as '<u2', '|u1', '>f8')")]
    Dtype(String),
    /// More than one variable dimension.
    #[error("shape has {0} variable dimensions; at most one is allowed")]
    MultipleVariableDimensions(usize),
    /// numpy descriptors need a fixed shape.
    #[error("a numpy dtype descriptor cannot have a variable dimension")]
    VariableNumpyShape,
    /// An empty format list.
    #[error("format list is empty")]
    EmptyFormat,
    /// A format field does not fit the flavour's field width.
    #[error("format field ({code:?}, {bits}) does not fit {width} bytes")]
    FormatField {
        /// Type code.
        code: char,
        /// Bits.
        bits: u64,
        /// Width of the bit count, in bytes.
        width: usize,
    },
    /// A format field with zero width.
    #[error("format field ({0:?}, 0) has zero width")]
    ZeroWidthField(char),
    /// A dimension does not fit the flavour's shape width.
    #[error("dimension {dim} does not fit {width} bytes")]
    Dimension {
        /// Offending dimension.
        dim: u64,
        /// Width of a dimension, in bytes.
        width: usize,
    },
    /// Names and descriptions travel as ASCII.
    #[error("descriptor {field} {text:?} is not ASCII")]
    NotAscii {
        /// `name` or `description`.
        field: &'static str,
        /// Offending text.
        text: String,
    },
    /// The encoded descriptor is larger than the flavour can address.
    #[error("encoded descriptor payload of {0} bytes exceeds the flavour's address range")]
    TooLarge(usize),
    /// The encoded descriptor packet is malformed.
    #[error("malformed descriptor packet")]
    Packet(#[from] DecodeError),
    /// A required field is absent from an encoded descriptor.
    #[error("descriptor has no {0} field")]
    MissingField(&'static str),
    /// A field of an encoded descriptor has the wrong size or content.
    #[error("descriptor field {field} is malformed: {why}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The numpy header is not the dict spead2 writes.
    #[error("bad numpy header {header:?}: {why}")]
    NumpyHeader {
        /// The header text.
        header: String,
        /// What is wrong.
        why: String,
    },
}

/// An item descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Descriptor {
    /// ID of the described item.
    pub id: u64,
    /// Short name, suitable as a key.
    pub name: String,
    /// Long description.
    pub description: String,
    /// Dimensions; `None` is a variable dimension (at most one).
    pub shape: Vec<Option<u64>>,
    /// Element layout.
    pub data_type: DataType,
}

impl Descriptor {
    /// A descriptor with a SPEAD format list.
    pub fn with_format(
        id: u64,
        name: impl Into<String>,
        description: impl Into<String>,
        shape: Vec<Option<u64>>,
        format: Vec<FormatField>,
    ) -> Self {
        Descriptor {
            id,
            name: name.into(),
            description: description.into(),
            shape,
            data_type: DataType::Format(format),
        }
    }

    /// A descriptor with a numpy dtype (validated by [`NumpyDtype::new`]).
    pub fn with_dtype(
        id: u64,
        name: impl Into<String>,
        description: impl Into<String>,
        shape: Vec<u64>,
        dtype: &str,
        fortran_order: bool,
    ) -> Result<Self, DescriptorError> {
        Ok(Descriptor {
            id,
            name: name.into(),
            description: description.into(),
            shape: shape.into_iter().map(Some).collect(),
            data_type: DataType::Numpy {
                dtype: NumpyDtype::new(dtype)?,
                fortran_order,
            },
        })
    }

    /// Bits per element: the dtype's size or the format fields' sum.
    pub fn itemsize_bits(&self) -> u64 {
        match &self.data_type {
            DataType::Numpy { dtype, .. } => dtype.itemsize() * 8,
            DataType::Format(fields) => fields.iter().map(|f| f.bits).sum(),
        }
    }

    /// Whether a dimension is variable.
    pub fn is_variable_size(&self) -> bool {
        self.shape.iter().any(Option::is_none)
    }

    /// spead2's rule for whether small values may go as immediates: a fixed
    /// shape, and a dtype or a whole number of bytes per element.
    pub fn allow_immediate(&self) -> bool {
        !self.is_variable_size()
            && (matches!(self.data_type, DataType::Numpy { .. }) || self.itemsize_bits() % 8 == 0)
    }

    /// Bytes a value of this item takes, if the shape is fixed.
    pub fn fixed_size(&self) -> Option<u64> {
        let elements: Option<u64> = self.shape.iter().try_fold(1u64, |n, d| n.checked_mul((*d)?));
        Some(elements?.checked_mul(self.itemsize_bits())?.div_ceil(8))
    }

    /// Checks the descriptor against the rules spead2 applies and the field
    /// widths of `flavour`.
    pub fn validate(&self, flavour: Flavour) -> Result<(), DescriptorError> {
        if self.id == 0 || self.id > flavour.max_item_id() {
            return Err(DescriptorError::ItemId {
                id: self.id,
                max: flavour.max_item_id(),
            });
        }
        for (field, text) in [("name", &self.name), ("description", &self.description)] {
            if !text.is_ascii() {
                return Err(DescriptorError::NotAscii {
                    field,
                    text: text.clone(),
                });
            }
        }
        let variable = self.shape.iter().filter(|d| d.is_none()).count();
        if variable > 1 {
            return Err(DescriptorError::MultipleVariableDimensions(variable));
        }
        let shape_width = shape_entry_size(flavour) - 1;
        for dim in self.shape.iter().flatten() {
            if !fits(*dim, shape_width) {
                return Err(DescriptorError::Dimension {
                    dim: *dim,
                    width: shape_width,
                });
            }
        }
        match &self.data_type {
            DataType::Numpy { .. } if variable > 0 => Err(DescriptorError::VariableNumpyShape),
            DataType::Numpy { .. } => Ok(()),
            DataType::Format(fields) if fields.is_empty() => Err(DescriptorError::EmptyFormat),
            DataType::Format(fields) => {
                let width = format_entry_size(flavour) - 1;
                for f in fields {
                    if f.bits == 0 {
                        return Err(DescriptorError::ZeroWidthField(char::from(f.code)));
                    }
                    if !fits(f.bits, width) {
                        return Err(DescriptorError::FormatField {
                            code: char::from(f.code),
                            bits: f.bits,
                            width,
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// The numpy header text (Python's repr of the dict), if numpy-typed.
    pub fn numpy_header(&self) -> Option<String> {
        let DataType::Numpy { dtype, fortran_order } = &self.data_type else {
            return None;
        };
        let mut shape = String::from("(");
        for (i, dim) in self.shape.iter().enumerate() {
            if i > 0 {
                shape.push_str(", ");
            }
            write!(shape, "{}", dim.unwrap_or(0)).expect("write to String");
        }
        if self.shape.len() == 1 {
            shape.push(',');
        }
        shape.push(')');
        let order = if *fortran_order { "True" } else { "False" };
        Some(format!(
            "{{'descr': '{}', 'fortran_order': {order}, 'shape': {shape}}}",
            dtype.as_str()
        ))
    }

    /// Encodes the descriptor as spead2 does: a complete SPEAD packet whose
    /// pointers are cnt 1, heap length, offset 0, payload length, the
    /// described ID, then name, description, format, shape (and dtype).
    pub fn encode(&self, flavour: Flavour) -> Result<Vec<u8>, DescriptorError> {
        self.validate(flavour)?;
        let numpy_header = self.numpy_header();
        let format: &[FormatField] = match &self.data_type {
            DataType::Format(fields) => fields,
            DataType::Numpy { .. } => &[],
        };
        let format_size = format_entry_size(flavour);
        let shape_size = shape_entry_size(flavour);
        let numpy_len = numpy_header.as_ref().map_or(0, String::len);
        let fields_len = [
            self.name.len(),
            self.description.len(),
            format.len() * format_size,
            self.shape.len() * shape_size,
            numpy_len,
        ];
        let payload_len: usize = fields_len.iter().sum();
        if payload_len as u64 > flavour.max_value() {
            return Err(DescriptorError::TooLarge(payload_len));
        }
        let n_items = 9 + usize::from(numpy_header.is_some());
        let mut out = vec![0u8; HEADER_LEN + n_items * POINTER_SIZE + payload_len];
        let mut packet = Packet::new_unchecked(&mut out[..]);
        packet.set_header(flavour, n_items as u16);
        let payload_len = payload_len as u64;
        let mut pointers = vec![
            flavour.immediate(item_id::HEAP_CNT, 1),
            flavour.immediate(item_id::HEAP_LENGTH, payload_len),
            flavour.immediate(item_id::PAYLOAD_OFFSET, 0),
            flavour.immediate(item_id::PAYLOAD_LENGTH, payload_len),
            flavour.immediate(item_id::DESCRIPTOR_ID, self.id),
        ];
        let field_ids = [
            item_id::DESCRIPTOR_NAME,
            item_id::DESCRIPTOR_DESCRIPTION,
            item_id::DESCRIPTOR_FORMAT,
            item_id::DESCRIPTOR_SHAPE,
            item_id::DESCRIPTOR_DTYPE,
        ];
        let mut offset = 0u64;
        for (id, len) in field_ids.into_iter().zip(fields_len).take(n_items - 5) {
            pointers.push(flavour.address(id, offset));
            offset += len as u64;
        }
        for (i, raw) in pointers.into_iter().enumerate() {
            packet.set_pointer(i, raw);
        }
        let mut payload = Vec::with_capacity(payload_len as usize);
        payload.extend_from_slice(self.name.as_bytes());
        payload.extend_from_slice(self.description.as_bytes());
        for f in format {
            payload.push(f.code);
            push_be(&mut payload, f.bits, format_size - 1);
        }
        for dim in &self.shape {
            payload.push(u8::from(dim.is_none()));
            push_be(&mut payload, dim.unwrap_or(0), shape_size - 1);
        }
        if let Some(header) = &numpy_header {
            payload.extend_from_slice(header.as_bytes());
        }
        packet.payload_mut().copy_from_slice(&payload);
        Ok(out)
    }

    /// Decodes the value of a descriptor item (a complete SPEAD packet).
    /// Field widths follow the flavour the embedded packet announces.
    pub fn decode(bytes: &[u8]) -> Result<Self, DescriptorError> {
        let packet = PacketInfo::parse(bytes)?;
        let flavour = packet.flavour;
        let payload = packet.payload();
        let mut id = None;
        let mut fields: [Option<&[u8]>; 5] = [None; 5];
        for item in decode_items(packet.item_pointers(), payload)? {
            let slot = match item.id {
                item_id::DESCRIPTOR_ID => {
                    id = Some(match item.extent {
                        ItemExtent::Immediate(v) => v,
                        ItemExtent::Payload(range) => {
                            be_value(&payload[range]).ok_or_else(|| DescriptorError::Field {
                                field: "id",
                                why: "longer than 8 bytes".into(),
                            })?
                        }
                    });
                    continue;
                }
                item_id::DESCRIPTOR_NAME => 0,
                item_id::DESCRIPTOR_DESCRIPTION => 1,
                item_id::DESCRIPTOR_FORMAT => 2,
                item_id::DESCRIPTOR_SHAPE => 3,
                item_id::DESCRIPTOR_DTYPE => 4,
                _ => continue,
            };
            match item.extent {
                ItemExtent::Payload(range) => fields[slot] = Some(&payload[range]),
                ItemExtent::Immediate(_) => {
                    return Err(DescriptorError::Field {
                        field: FIELD_NAMES[slot],
                        why: "sent as an immediate".into(),
                    })
                }
            }
        }
        let id = id.ok_or(DescriptorError::MissingField("id"))?;
        let text = |slot: usize| -> Result<String, DescriptorError> {
            let bytes = fields[slot].unwrap_or_default();
            String::from_utf8(bytes.to_vec())
                .ok()
                .filter(|s| s.is_ascii())
                .ok_or_else(|| DescriptorError::Field {
                    field: FIELD_NAMES[slot],
                    why: "not ASCII".into(),
                })
        };
        let name = text(0)?;
        let description = text(1)?;
        let shape = decode_shape(fields[3].unwrap_or_default(), shape_entry_size(flavour))?;
        let data_type = match fields[4].filter(|h| !h.is_empty()) {
            Some(header) => {
                let header = std::str::from_utf8(header).map_err(|_| DescriptorError::Field {
                    field: "dtype",
                    why: "not UTF-8".into(),
                })?;
                let parsed = parse_numpy_header(header)?;
                return Ok(Descriptor {
                    id,
                    name,
                    description,
                    shape: parsed.shape.into_iter().map(Some).collect(),
                    data_type: DataType::Numpy {
                        dtype: parsed.dtype,
                        fortran_order: parsed.fortran_order,
                    },
                });
            }
            None => DataType::Format(decode_format(
                fields[2].unwrap_or_default(),
                format_entry_size(flavour),
            )?),
        };
        Ok(Descriptor {
            id,
            name,
            description,
            shape,
            data_type,
        })
    }
}

const FIELD_NAMES: [&str; 5] = ["name", "description", "format", "shape", "dtype"];

/// Bytes of one format entry: a type code and `8 - bits/8` bytes of width.
fn format_entry_size(flavour: Flavour) -> usize {
    POINTER_SIZE + 1 - flavour.immediate_size()
}

/// Bytes of one shape entry: a flag byte and `bits/8` bytes of size.
fn shape_entry_size(flavour: Flavour) -> usize {
    1 + flavour.immediate_size()
}

fn fits(value: u64, bytes: usize) -> bool {
    bytes >= 8 || value >> (8 * bytes) == 0
}

fn push_be(out: &mut Vec<u8>, value: u64, bytes: usize) {
    out.extend_from_slice(&value.to_be_bytes()[8 - bytes..]);
}

fn be_value(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn decode_format(bytes: &[u8], entry: usize) -> Result<Vec<FormatField>, DescriptorError> {
    if bytes.len() % entry != 0 {
        return Err(DescriptorError::Field {
            field: "format",
            why: format!("{} bytes is not a multiple of {entry}", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(entry)
        .map(|e| FormatField::new(e[0], be_value(&e[1..]).expect("entry of at most 8 bytes")))
        .collect())
}

fn decode_shape(bytes: &[u8], entry: usize) -> Result<Vec<Option<u64>>, DescriptorError> {
    if bytes.len() % entry != 0 {
        return Err(DescriptorError::Field {
            field: "shape",
            why: format!("{} bytes is not a multiple of {entry}", bytes.len()),
        });
    }
    bytes
        .chunks_exact(entry)
        .map(|e| {
            let size = be_value(&e[1..]).expect("entry of at most 8 bytes");
            // spead2 writes 1 for a variable dimension; PySPEAD's bug-compatible
            // encoders write 2.
            match e[0] {
                0 => Ok(Some(size)),
                1 | 2 => Ok(None),
                flag => Err(DescriptorError::Field {
                    field: "shape",
                    why: format!("unknown dimension flag {flag:#04x}"),
                }),
            }
        })
        .collect()
}

/// The meaning of a numpy header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NumpyHeader {
    /// Element type.
    pub dtype: NumpyDtype,
    /// True for Fortran order.
    pub fortran_order: bool,
    /// Dimensions.
    pub shape: Vec<u64>,
}

/// Parses the Python dict literal spead2 writes as a numpy header, e.g.
/// `{'descr': '<u2', 'fortran_order': False, 'shape': (3, 4)}`. Keys may come
/// in any order; all three are required, as in spead2.
fn parse_numpy_header(header: &str) -> Result<NumpyHeader, DescriptorError> {
    let fail = |why: &str| DescriptorError::NumpyHeader {
        header: header.to_owned(),
        why: why.to_owned(),
    };
    let mut lexer = Lexer::new(header);
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    lexer.expect('{').map_err(|w| fail(&w))?;
    loop {
        if lexer.eat('}') {
            break;
        }
        let key = lexer.string().map_err(|w| fail(&w))?;
        lexer.expect(':').map_err(|w| fail(&w))?;
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(lexer.string().map_err(|w| fail(&w))?),
            "fortran_order" if fortran_order.is_none() => {
                fortran_order = Some(lexer.boolean().map_err(|w| fail(&w))?)
            }
            "shape" if shape.is_none() => shape = Some(lexer.int_tuple().map_err(|w| fail(&w))?),
            other => return Err(fail(&format!("unexpected or repeated key {other:?}"))),
        }
        if !lexer.eat(',') {
            lexer.expect('}').map_err(|w| fail(&w))?;
            break;
        }
    }
    if !lexer.at_end() {
        return Err(fail("trailing text after the dict"));
    }
    let descr = descr.ok_or_else(|| fail("no 'descr' key"))?;
    Ok(NumpyHeader {
        dtype: NumpyDtype::new(&descr)?,
        fortran_order: fortran_order.ok_or_else(|| fail("no 'fortran_order' key"))?,
        shape: shape.ok_or_else(|| fail("no 'shape' key"))?,
    })
}

/// A tokenizer for the small subset of Python literals numpy headers use.
struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer { rest: text }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.rest.is_empty()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?}"))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = self.rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        let quote = quote.ok_or("expected a string")?;
        let body = &self.rest[1..];
        let end = body.find(quote).ok_or("unterminated string")?;
        if body[..end].contains('\\') {
            return Err("escapes in strings are not supported".into());
        }
        self.rest = &body[end + 1..];
        Ok(body[..end].to_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err("expected True or False".into())
    }

    fn int_tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                break;
            }
            self.skip_space();
            let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err("expected a non-negative integer dimension".into());
            }
            let dim = self.rest[..digits].parse().map_err(|_| "dimension too large")?;
            self.rest = &self.rest[digits..];
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_header_is_python_repr() {
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![7, 1, 9], "<i4", false).unwrap();
        assert_eq!(
            d.numpy_header().unwrap(),
            "{'descr': '<i4', 'fortran_order': False, 'shape': (7, 1, 9)}"
        );
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![5], "u1", true).unwrap();
        assert_eq!(
            d.numpy_header().unwrap(),
            "{'descr': '|u1', 'fortran_order': True, 'shape': (5,)}"
        );
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![], ">f8", false).unwrap();
        assert_eq!(
            d.numpy_header().unwrap(),
            "{'descr': '>f8', 'fortran_order': False, 'shape': ()}"
        );
    }

    #[test]
    fn dtypes_normalise_like_numpy() {
        for (given, expected) in [
            ("u1", "|u1"),
            ("<u1", "|u1"),
            ("=u2", "<u2"),
            ("u2", "<u2"),
            (">i4", ">i4"),
            ("b1", "|b1"),
            ("S10", "|S10"),
            ("<c8", "<c8"),
            ("U3", "<U3"),
        ] {
            assert_eq!(NumpyDtype::new(given).unwrap().as_str(), expected, "{given}");
        }
        for bad in ["", "<", "u", "u3", "O8", "i0", "<u2x", "[('a', '<u2')]"] {
            assert_eq!(
                NumpyDtype::new(bad),
                Err(DescriptorError::Dtype(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(NumpyDtype::new("<U3").unwrap().itemsize(), 12);
    }

    #[test]
    fn encode_decode_round_trip() {
        for flavour in [
            Flavour::SPEAD_64_48,
            Flavour::SPEAD_64_40,
            Flavour::new(16).unwrap(),
        ] {
            let descriptors = [
                Descriptor::with_format(
                    0x1001,
                    "timestamp",
                    "ADC sample count",
                    vec![],
                    vec![FormatField::new(b'u', 48)],
                ),
                Descriptor::with_format(
                    0x1002,
                    "s",
                    "a string",
                    vec![None],
                    vec![FormatField::new(b'c', 8)],
                ),
                Descriptor::with_dtype(0x1003, "vis", "", vec![4, 2], "<c8", true).unwrap(),
            ];
            for d in descriptors {
                let id = d.id.min(flavour.max_item_id());
                let d = Descriptor { id, ..d };
                let bytes = d.encode(flavour).unwrap();
                assert_eq!(Descriptor::decode(&bytes).unwrap(), d);
            }
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let f = Flavour::SPEAD_64_48;
        let fmt = |shape, format| Descriptor::with_format(0x1000, "n", "d", shape, format);
        assert!(matches!(
            fmt(vec![None, None], vec![FormatField::new(b'u', 8)]).encode(f),
            Err(DescriptorError::MultipleVariableDimensions(2))
        ));
        assert!(matches!(
            fmt(vec![], vec![]).encode(f),
            Err(DescriptorError::EmptyFormat)
        ));
        assert!(matches!(
            fmt(vec![], vec![FormatField::new(b'u', 1 << 16)]).encode(f),
            Err(DescriptorError::FormatField { bits: 65536, .. })
        ));
        assert!(matches!(
            fmt(vec![Some(1 << 48)], vec![FormatField::new(b'u', 8)]).encode(f),
            Err(DescriptorError::Dimension { .. })
        ));
        let d = Descriptor {
            id: 1 << 15,
            ..fmt(vec![], vec![FormatField::new(b'u', 8)])
        };
        assert!(d.encode(f).unwrap_err().to_string().contains("0x8000"));
        let d = Descriptor {
            name: "é".into(),
            ..fmt(vec![], vec![FormatField::new(b'u', 8)])
        };
        assert!(matches!(
            d.encode(f),
            Err(DescriptorError::NotAscii { field: "name", .. })
        ));
    }

    #[test]
    fn numpy_header_parser_accepts_python_spellings() {
        let h = parse_numpy_header("{\"shape\": (3 ,4,), 'fortran_order': True, 'descr': '>u2', }").unwrap();
        assert_eq!(h.shape, [3, 4]);
        assert!(h.fortran_order);
        assert_eq!(h.dtype.as_str(), ">u2");
        for bad in [
            "",
            "{",
            "{'descr': '<u2'}",
            "{'descr': '<u2', 'fortran_order': False, 'shape': (-1,)}",
            "{'descr': '<u2', 'fortran_order': 0, 'shape': ()}",
            "{'descr': '<u2', 'fortran_order': False, 'shape': ()} x",
            "{'descr': '<u2', 'descr': '<u2', 'fortran_order': False, 'shape': ()}",
            "{'descr': [('a', '<u2')], 'fortran_order': False, 'shape': ()}",
        ] {
            assert!(parse_numpy_header(bad).is_err(), "{bad}");
        }
    }
}
