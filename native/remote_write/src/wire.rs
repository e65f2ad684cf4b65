//! Protobuf wire reading: a bounds-checked cursor over one message, and the refusal type.
//! Every read checks its bounds and returns `DecodeError` instead of panicking.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadSnappy,
    BadProtobuf,
    TooLarge,
    BadLabels,
    Internal,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadSnappy => "bad_snappy",
            Reason::BadProtobuf => "bad_protobuf",
            Reason::TooLarge => "too_large",
            Reason::BadLabels => "bad_labels",
            Reason::Internal => "internal",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: Reason,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

pub fn refuse<T>(reason: Reason, message: String) -> Result<T, DecodeError> {
    Err(DecodeError { reason, message })
}

pub fn bad<T>(message: String) -> Result<T, DecodeError> {
    refuse(Reason::BadProtobuf, message)
}

pub fn wrong_type<T>(what: &str, wire_type: u8, at: usize) -> Result<T, DecodeError> {
    bad(format!("{what}: wire type {wire_type} at byte {at}"))
}

/// A cursor over one protobuf message `[pos, end)` of `buf`; offsets in messages are
/// absolute in the decompressed request.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub end: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], (pos, end): (usize, usize)) -> Self {
        Reader { buf, pos, end }
    }

    #[inline(always)]
    pub fn more(&self) -> bool {
        self.pos < self.end
    }

    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        if self.pos < self.end && self.buf[self.pos] < 0x80 {
            self.pos += 1;
            return Ok(u64::from(self.buf[self.pos - 1]));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            if self.pos >= self.end {
                return bad(format!("truncated varint at byte {start}"));
            }
            let byte = self.buf[self.pos];
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return bad(format!("varint overflow at byte {start}"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// (field number, wire type) of the next field.
    #[inline(always)]
    pub fn tag(&mut self) -> Result<(u64, u8), DecodeError> {
        let start = self.pos;
        let tag = self.varint()?;
        if tag > u64::from(u32::MAX) {
            return bad(format!("field tag too large at byte {start}"));
        }
        let field = tag >> 3;
        if field == 0 {
            return bad(format!("field number 0 at byte {start}"));
        }
        Ok((field, (tag & 7) as u8))
    }

    /// The `[start, end)` of a length-delimited field's payload; the cursor moves past it.
    #[inline(always)]
    pub fn length_delimited(&mut self) -> Result<(usize, usize), DecodeError> {
        let at = self.pos;
        let length = self.varint()?;
        let room = (self.end - self.pos) as u64;
        if length > room {
            return bad(format!("length {length} at byte {at} runs past the end"));
        }
        let start = self.pos;
        self.pos += length as usize;
        Ok((start, self.pos))
    }

    #[inline(always)]
    pub fn fixed64(&mut self) -> Result<u64, DecodeError> {
        if self.end - self.pos < 8 {
            return bad(format!("truncated fixed64 at byte {}", self.pos));
        }
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Skip an unknown field's value; groups (3, 4) and wire types 6, 7 are refused.
    pub fn skip(&mut self, wire_type: u8, at: usize) -> Result<(), DecodeError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.fixed64().map(drop),
            2 => self.length_delimited().map(drop),
            5 => {
                if self.end - self.pos < 4 {
                    return bad(format!("truncated fixed32 at byte {}", self.pos));
                }
                self.pos += 4;
                Ok(())
            }
            _ => bad(format!("unsupported wire type {wire_type} at byte {at}")),
        }
    }
}
