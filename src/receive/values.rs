//! Item values decoded through their descriptors: numpy dtypes (integers,
//! floats, complex, bool, byte strings, in either byte order) and SPEAD
//! format lists of whole-byte fields (`u`, `i`, `f`, `b`, `c`), element by
//! element in the item's order, as spead2's ItemGroup presents them.

use std::fmt;

use crate::protocol::{DataType, Descriptor};

/// One element of an item.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Unsigned integer.
    U(u64),
    /// Signed integer.
    I(i64),
    /// Floating point.
    F(f64),
    /// Complex (real, imaginary).
    C(f64, f64),
    /// Boolean.
    B(bool),
    /// Bytes (a character or a byte string).
    S(Vec<u8>),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::U(v) => write!(f, "{v}"),
            Scalar::I(v) => write!(f, "{v}"),
            Scalar::F(v) => write!(f, "{v}"),
            Scalar::C(re, im) => write!(f, "({re}{im:+}j)"),
            Scalar::B(v) => write!(f, "{}", if *v { "True" } else { "False" }),
            Scalar::S(v) => write!(f, "b'{}'", v.escape_ascii()),
        }
    }
}

/// A decoded item: its elements (one record per element for format lists
/// with several fields) and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Dimensions (variable ones resolved from the data).
    pub shape: Vec<u64>,
    /// Elements in the item's order, each a record of its fields.
    pub elements: Vec<Vec<Scalar>>,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |e: &Vec<Scalar>| -> String {
            if e.len() == 1 {
                e[0].to_string()
            } else {
                format!(
                    "({})",
                    e.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )
            }
        };
        // A character string reads best as one.
        if self
            .elements
            .iter()
            .all(|e| matches!(e.as_slice(), [Scalar::S(s)] if s.len() == 1))
            && !self.shape.is_empty()
        {
            let text: Vec<u8> = self
                .elements
                .iter()
                .flat_map(|e| match &e[0] {
                    Scalar::S(s) => s.clone(),
                    _ => Vec::new(),
                })
                .collect();
            return write!(f, "b'{}'", text.escape_ascii());
        }
        if self.shape.is_empty() {
            return match self.elements.first() {
                Some(e) => write!(f, "{}", show(e)),
                None => write!(f, "[]"),
            };
        }
        let shown: Vec<String> = self.elements.iter().take(16).map(show).collect();
        let more = if self.elements.len() > 16 {
            format!(", ... ({} elements)", self.elements.len())
        } else {
            String::new()
        };
        write!(f, "[{}{more}] shape {:?}", shown.join(", "), self.shape)
    }
}

/// One field's layout: type, bytes, big-endian.
#[derive(Debug, Clone, Copy)]
struct Field {
    kind: u8,
    bytes: usize,
    big_endian: bool,
}

fn fields_of(descriptor: &Descriptor) -> Option<Vec<Field>> {
    match &descriptor.data_type {
        DataType::Numpy { dtype, .. } => {
            let text = dtype.as_str().as_bytes();
            let kind = text[1];
            let bytes = dtype.itemsize() as usize;
            Some(vec![Field {
                kind: if kind == b'S' { b'c' } else { kind },
                bytes,
                big_endian: text[0] == b'>',
            }])
        }
        DataType::Format(format) => format
            .iter()
            .map(|f| {
                (f.bits % 8 == 0 && f.bits <= 64).then_some(Field {
                    kind: f.code,
                    bytes: (f.bits / 8) as usize,
                    big_endian: true,
                })
            })
            .collect(),
    }
}

fn scalar(field: Field, raw: &[u8]) -> Option<Scalar> {
    let mut bytes = [0u8; 16];
    let n = raw.len();
    if field.big_endian {
        bytes[16 - n..].copy_from_slice(raw);
    } else {
        for (i, b) in raw.iter().enumerate() {
            bytes[15 - i] = *b;
        }
    }
    let unsigned = u128::from_be_bytes(bytes);
    Some(match (field.kind, n) {
        (b'u', 1..=8) => Scalar::U(unsigned as u64),
        (b'i', 1..=8) => {
            let shift = 128 - 8 * n as u32;
            Scalar::I((((unsigned << shift) as i128) >> shift) as i64)
        }
        (b'f', 2) => Scalar::F(half_to_f64(unsigned as u16)),
        (b'f', 4) => Scalar::F(f64::from(f32::from_bits(unsigned as u32))),
        (b'f', 8) => Scalar::F(f64::from_bits(unsigned as u64)),
        (b'c', 1) => Scalar::S(raw.to_vec()),
        (b'c', 8) | (b'c', 16) => {
            let half = Field {
                kind: b'f',
                bytes: n / 2,
                big_endian: field.big_endian,
            };
            let (re, im) = (scalar(half, &raw[..n / 2])?, scalar(half, &raw[n / 2..])?);
            match (re, im) {
                (Scalar::F(re), Scalar::F(im)) => Scalar::C(re, im),
                _ => return None,
            }
        }
        (b'c', _) => Scalar::S(raw.to_vec()),
        (b'b', 1) => Scalar::B(raw[0] != 0),
        _ => return None,
    })
}

fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Decodes an item's bytes through its descriptor, or `None` if the
/// layout is not one this decodes (fields not whole bytes, a size that does
/// not match the shape).
pub fn decode(descriptor: &Descriptor, bytes: &[u8]) -> Option<Value> {
    let fields = fields_of(descriptor)?;
    let element: usize = fields.iter().map(|f| f.bytes).sum();
    if element == 0 {
        return None;
    }
    // An immediate carries its value right-aligned in a wider field.
    let known: u64 = descriptor.shape.iter().flatten().product();
    let bytes = match descriptor.fixed_size() {
        Some(size) if (size as usize) < bytes.len() && descriptor.shape.is_empty() => {
            &bytes[bytes.len() - size as usize..]
        }
        Some(size) if size as usize != bytes.len() => return None,
        _ => bytes,
    };
    if bytes.len() % element != 0 {
        return None;
    }
    let count = bytes.len() / element;
    let shape = descriptor
        .shape
        .iter()
        .map(|d| d.unwrap_or(count as u64 / known.max(1)))
        .collect();
    let elements = bytes
        .chunks_exact(element)
        .map(|chunk| {
            let mut at = 0;
            fields
                .iter()
                .map(|f| {
                    let s = scalar(*f, &chunk[at..at + f.bytes]);
                    at += f.bytes;
                    s
                })
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Value { shape, elements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FormatField;

    #[test]
    fn numpy_values_in_both_byte_orders() {
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![2], "<u2", false).unwrap();
        let v = decode(&d, &[1, 0, 0, 1]).unwrap();
        assert_eq!(v.elements, vec![vec![Scalar::U(1)], vec![Scalar::U(256)]]);
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![], ">i4", false).unwrap();
        assert_eq!(
            decode(&d, &(-5i32).to_be_bytes()).unwrap().elements,
            vec![vec![Scalar::I(-5)]]
        );
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![1], "<c8", false).unwrap();
        let mut raw = 1.5f32.to_le_bytes().to_vec();
        raw.extend((-2.0f32).to_le_bytes());
        assert_eq!(
            decode(&d, &raw).unwrap().elements,
            vec![vec![Scalar::C(1.5, -2.0)]]
        );
        let d = Descriptor::with_dtype(0x1000, "x", "", vec![2], "<u2", false).unwrap();
        assert_eq!(decode(&d, &[1, 2, 3]), None, "size does not match the shape");
    }

    #[test]
    fn format_lists_immediates_and_strings() {
        let ts = Descriptor::with_format(0x1600, "ts", "", vec![], vec![FormatField::new(b'u', 48)]);
        // An immediate of 64-48 arrives as 6 bytes; of 64-40 as 5 (padded).
        assert_eq!(decode(&ts, &[0, 0, 0, 0, 1, 2]).unwrap().to_string(), "258");
        let text = Descriptor::with_format(0x1700, "s", "", vec![None], vec![FormatField::new(b'c', 8)]);
        let v = decode(&text, b"hello").unwrap();
        assert_eq!((v.shape.clone(), v.to_string()), (vec![5], "b'hello'".to_owned()));
        let pair = Descriptor::with_format(
            0x1800,
            "p",
            "",
            vec![Some(2)],
            vec![FormatField::new(b'u', 8), FormatField::new(b'i', 16)],
        );
        let v = decode(&pair, &[1, 0xff, 0xfe, 2, 0, 3]).unwrap();
        assert_eq!(v.elements[0], vec![Scalar::U(1), Scalar::I(-2)]);
        assert_eq!(v.to_string(), "[(1, -2), (2, 3)] shape [2]");
        let odd = Descriptor::with_format(0x1801, "o", "", vec![], vec![FormatField::new(b'u', 12)]);
        assert_eq!(decode(&odd, &[1, 2]), None);
    }
}
