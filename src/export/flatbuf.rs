//! A minimal FlatBuffers writer: tables of scalars and offsets, vectors of tables, of
//! scalars and of bytes, and strings; what a TFLite model needs and nothing more.
//!
//! The object tree is built in memory ([`Obj`]) and laid out front to back: each table's
//! vtable just before it, then the table, then its children, so that every offset (`uoffset`,
//! unsigned, forward) is positive. Every scalar sits at its natural alignment relative to the
//! buffer's start, byte vectors' data at 16 bytes (TFLite's `force_align: 16` for buffers),
//! so the FlatBuffers verifier LiteRT runs on load accepts the result.

/// A table field's value.
#[derive(Clone, Debug)]
pub enum Field {
    /// A `byte`/`ubyte`/`bool`/enum stored in one byte.
    U8(u8),
    /// An `int`.
    I32(i32),
    /// A `uint`.
    U32(u32),
    /// A `float`.
    F32(f32),
    /// An offset to a child object.
    Obj(Obj),
}

/// An object referenced by offset.
#[derive(Clone, Debug)]
pub enum Obj {
    /// A table: `(field id, value)` pairs, ids as the schema numbers them (a union takes
    /// two: its type, then its value).
    Table(Vec<(u16, Field)>),
    /// A vector of tables.
    Tables(Vec<Obj>),
    /// A vector of `int`.
    I32s(Vec<i32>),
    /// A vector of `float`.
    F32s(Vec<f32>),
    /// A vector of `long`.
    I64s(Vec<i64>),
    /// A vector of `ubyte`, data aligned to 16 bytes.
    Bytes(Vec<u8>),
    /// A string.
    Str(String),
}

/// The bytes of a FlatBuffer whose root table is `root`, with the 4-byte file identifier
/// `ident`.
pub fn finish(root: &Obj, ident: &[u8; 4]) -> Vec<u8> {
    let mut w = Writer { buf: vec![0; 4] };
    w.buf.extend_from_slice(ident);
    let at = w.obj(root);
    w.patch(0, at);
    w.buf
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Pads with zeros until `buf.len() + ahead` is a multiple of `align`.
    fn pad(&mut self, align: usize, ahead: usize) {
        while (self.buf.len() + ahead) % align != 0 {
            self.buf.push(0);
        }
    }

    /// Writes the uoffset at `at` pointing to `target` (which lies after it).
    fn patch(&mut self, at: usize, target: usize) {
        let off = (target - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&off.to_le_bytes());
    }

    /// Writes `obj` and everything under it; returns where references to it point.
    fn obj(&mut self, obj: &Obj) -> usize {
        match obj {
            Obj::Table(fields) => self.table(fields),
            Obj::Tables(items) => {
                self.pad(4, 0);
                let at = self.buf.len();
                self.buf
                    .extend_from_slice(&(items.len() as u32).to_le_bytes());
                self.buf.resize(at + 4 + 4 * items.len(), 0);
                for (k, item) in items.iter().enumerate() {
                    let child = self.obj(item);
                    self.patch(at + 4 + 4 * k, child);
                }
                at
            }
            Obj::I32s(v) => self.vector(4, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Obj::F32s(v) => self.vector(4, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Obj::I64s(v) => self.vector(8, v.len(), v.iter().flat_map(|x| x.to_le_bytes())),
            Obj::Bytes(v) => self.vector(16, v.len(), v.iter().copied()),
            Obj::Str(s) => {
                let at = self.vector(4, s.len(), s.bytes());
                self.buf.push(0);
                at
            }
        }
    }

    /// A length-prefixed vector whose elements start at a multiple of `align`.
    fn vector(&mut self, align: usize, len: usize, bytes: impl Iterator<Item = u8>) -> usize {
        self.pad(align.max(4), 4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.extend(bytes);
        at
    }

    /// A vtable, then the table (4-byte fields first, then 1-byte ones), then its children.
    fn table(&mut self, fields: &[(u16, Field)]) -> usize {
        let size = |f: &Field| match f {
            Field::U8(_) => 1,
            _ => 4,
        };
        let mut order: Vec<&(u16, Field)> = fields.iter().collect();
        order.sort_by_key(|(id, f)| (std::cmp::Reverse(size(f)), *id));
        // Field offsets within the table; the table starts with its 4-byte vtable offset.
        let mut offsets = Vec::with_capacity(order.len());
        let mut inline = 4;
        for (_, f) in &order {
            offsets.push(inline);
            inline += size(f);
        }
        let slots = fields
            .iter()
            .map(|(id, _)| usize::from(*id) + 1)
            .max()
            .unwrap_or(0);
        let mut vtable = vec![0u16; 2 + slots];
        vtable[0] = (2 * vtable.len()) as u16;
        vtable[1] = inline as u16;
        for ((id, _), &off) in order.iter().zip(&offsets) {
            vtable[2 + usize::from(*id)] = off as u16;
        }
        self.pad(2, 0);
        let vt_at = self.buf.len();
        self.buf.extend(vtable.iter().flat_map(|v| v.to_le_bytes()));
        self.pad(4, 0);
        let at = self.buf.len();
        self.buf
            .extend_from_slice(&((at - vt_at) as i32).to_le_bytes());
        let mut children = Vec::new();
        for ((_, f), &off) in order.iter().zip(&offsets) {
            match f {
                Field::U8(v) => self.buf.push(*v),
                Field::I32(v) => self.buf.extend_from_slice(&v.to_le_bytes()),
                Field::U32(v) => self.buf.extend_from_slice(&v.to_le_bytes()),
                Field::F32(v) => self.buf.extend_from_slice(&v.to_le_bytes()),
                Field::Obj(o) => {
                    self.buf.extend_from_slice(&[0; 4]);
                    children.push((at + off, o));
                }
            }
        }
        for (slot, child) in children {
            let target = self.obj(child);
            self.patch(slot, target);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }

    /// Reads field `id` of the table at `t` as the position it holds (offset fields) or the
    /// position of the scalar.
    fn field(b: &[u8], t: usize, id: usize) -> Option<usize> {
        let vt = t - i32::from_le_bytes(b[t..t + 4].try_into().unwrap()) as usize;
        let vt_len = u16::from_le_bytes([b[vt], b[vt + 1]]) as usize;
        if 4 + 2 * id >= vt_len {
            return None;
        }
        let off = u16::from_le_bytes([b[vt + 4 + 2 * id], b[vt + 5 + 2 * id]]) as usize;
        (off != 0).then_some(t + off)
    }

    #[test]
    fn a_table_reads_back_through_its_vtable() {
        let root = Obj::Table(vec![
            (0, Field::U32(3)),
            (2, Field::Obj(Obj::Str("hi".into()))),
            (3, Field::U8(9)),
            (4, Field::Obj(Obj::Bytes(vec![1, 2, 3]))),
            (5, Field::Obj(Obj::I64s(vec![-1]))),
        ]);
        let b = finish(&root, b"TEST");
        assert_eq!(&b[4..8], b"TEST");
        let t = u32_at(&b, 0);
        assert_eq!(t % 4, 0);
        assert_eq!(u32_at(&b, field(&b, t, 0).unwrap()), 3);
        assert_eq!(field(&b, t, 1), None);
        assert_eq!(b[field(&b, t, 3).unwrap()], 9);
        let s = field(&b, t, 2).unwrap();
        let s = s + u32_at(&b, s);
        assert_eq!(&b[s..s + 7], b"\x02\0\0\0hi\0");
        let v = field(&b, t, 4).unwrap();
        let v = v + u32_at(&b, v);
        assert_eq!((v + 4) % 16, 0);
        assert_eq!(&b[v + 4..v + 7], &[1, 2, 3]);
        let v = field(&b, t, 5).unwrap();
        let v = v + u32_at(&b, v);
        assert_eq!((v + 4) % 8, 0);
        assert_eq!(i64::from_le_bytes(b[v + 4..v + 12].try_into().unwrap()), -1);
    }
}
