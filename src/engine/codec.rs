//! A small, checked binary encoding for persisted state (RDB values and aux data).
//!
//! Every read is bounds-checked and every length is validated against the bytes that remain, so a
//! truncated or corrupted payload yields a [`DecodeError`] and never a panic or a huge allocation.

use std::fmt;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt payload: {}", self.0)
    }
}

/// Appends little-endian values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    /// A length as u32; callers keep every collection far below 4 G entries by config.
    pub fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    pub fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
}

/// Reads what [`Writer`] wrote, failing cleanly on short or malformed input.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

pub type DResult<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError("truncated"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> DResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> DResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> DResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }
    pub fn u32(&mut self) -> DResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> DResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> DResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn f32(&mut self) -> DResult<f32> {
        let v = f32::from_bits(u32::from_le_bytes(self.array()?));
        if v.is_finite() {
            Ok(v)
        } else {
            Err(DecodeError("non-finite number"))
        }
    }
    pub fn f64(&mut self) -> DResult<f64> {
        let v = f64::from_bits(u64::from_le_bytes(self.array()?));
        if v.is_finite() {
            Ok(v)
        } else {
            Err(DecodeError("non-finite number"))
        }
    }
    /// A count of elements each at least `min_elem_size` bytes long, checked against what remains.
    pub fn len(&mut self, min_elem_size: usize) -> DResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_elem_size.max(1)) > self.remaining() && min_elem_size > 0 {
            return Err(DecodeError("length exceeds payload"));
        }
        Ok(n)
    }
    pub fn bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    pub fn boxed(&mut self) -> DResult<Box<[u8]>> {
        Ok(self.bytes()?.into())
    }
    pub fn opt_boxed(&mut self) -> DResult<Option<Box<[u8]>>> {
        if self.bool()? {
            Ok(Some(self.boxed()?))
        } else {
            Ok(None)
        }
    }
    pub fn string(&mut self) -> DResult<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("bad utf-8"))
    }
    pub fn finish(&self) -> DResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u8(7);
        w.u32(42);
        w.i64(-5);
        w.f64(1.5);
        w.bytes(b"hello");
        w.opt_bytes(None);
        let buf = w.buf;
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 42);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.f64().unwrap(), 1.5);
        assert_eq!(r.bytes().unwrap(), b"hello");
        assert_eq!(r.opt_boxed().unwrap(), None);
        assert!(r.finish().is_ok());
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut]);
            let res = (|| -> DResult<()> {
                r.u8()?;
                r.u32()?;
                r.i64()?;
                r.f64()?;
                r.bytes()?;
                r.opt_boxed()?;
                Ok(())
            })();
            assert!(res.is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn huge_length_is_rejected_without_allocating() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let mut r = Reader::new(&w.buf);
        assert!(r.bytes().is_err());
    }
}
