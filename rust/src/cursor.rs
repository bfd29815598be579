//! Reading Avro's binary encoding from one body, every read bounds-checked.

pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A zig-zag varint `long`.
    #[inline]
    pub fn long(&mut self) -> Result<i64, String> {
        let mut accum: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {}", self.pos));
            };
            self.pos += 1;
            accum |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok((accum >> 1) as i64 ^ -((accum & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return Err(format!("varint longer than 10 bytes at byte {}", self.pos));
            }
        }
    }

    /// An `int`: a varint that must fit 32 bits.
    #[inline]
    pub fn int(&mut self) -> Result<i32, String> {
        let at = self.pos;
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("int out of range ({v}) at byte {at}"))
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated body: {n} bytes wanted at byte {}, only {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// `bytes` or `string`: a length, then that many bytes.
    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let at = self.pos;
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| format!("negative length {n} at byte {at}"))?;
        self.take(n)
    }

    #[inline]
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
}
