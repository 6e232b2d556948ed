//! Hostile images for the decoders' tests, written byte by byte.

/// A valid PNG of `width` x `height` transparent black pixels (8-bit RGBA),
/// complete and small: its pixel data is one fixed-Huffman deflate block of
/// runs (13 bits for each 258 zero bytes), so one declaring 11,000 x 11,000
/// pixels, ~460 MiB decoded, is ~3 MB. A decoder without limits on what a
/// header declares allocates and fills all of it.
pub fn blank_png(width: u32, height: u32) -> Vec<u8> {
    let row = 1 + 4 * u64::from(width); // the filter byte, then RGBA
    let raw = row * u64::from(height);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // 8 bits a sample, RGBA, deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib_zeros(raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

/// One chunk: length, type, data, CRC-32 of type and data.
fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(
        &u32::try_from(data.len())
            .expect("a chunk fits")
            .to_be_bytes(),
    );
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    png.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// The CRC-32 (IEEE, reflected) of the concatenation of `parts`.
fn crc32(parts: &[&[u8]]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|mut c| {
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            c
        })
        .collect();
    let mut crc = !0u32;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        crc = table[((crc ^ u32::from(*byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A zlib stream of `count` zero bytes: a literal zero, then copies of 258
/// bytes at distance 1, then literal zeros for the rest, in one final block
/// with the fixed Huffman codes (RFC 1951, 3.2.6).
fn zlib_zeros(count: u64) -> Vec<u8> {
    // Huffman codes go most significant bit first into a stream read least
    // significant bit first: written here already reversed.
    const LITERAL_ZERO: (u64, u32) = (0b0000_1100, 8); // code 0x30, reversed
    const LENGTH_258: (u64, u32) = (0b1010_0011, 8); // symbol 285, code 0xC5, reversed
    const DISTANCE_1: (u64, u32) = (0, 5); // distance code 0
    const END_OF_BLOCK: (u64, u32) = (0, 7); // symbol 256
    let mut out = vec![0x78, 0x01];
    let mut bits = Bits::default();
    bits.put(0b011, 3); // the final block, fixed codes
    let mut left = count;
    if left > 0 {
        bits.put_code(LITERAL_ZERO, &mut out);
        left -= 1;
    }
    while left >= 258 {
        bits.put_code(LENGTH_258, &mut out);
        bits.put_code(DISTANCE_1, &mut out);
        left -= 258;
    }
    for _ in 0..left {
        bits.put_code(LITERAL_ZERO, &mut out);
    }
    bits.put_code(END_OF_BLOCK, &mut out);
    bits.flush(&mut out);
    // Adler-32 of zeros: a stays 1, b adds 1 for each byte.
    let adler = (((count % 65521) as u32) << 16) | 1;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// A little-endian bit writer.
#[derive(Default)]
struct Bits {
    value: u64,
    count: u32,
}

impl Bits {
    fn put(&mut self, value: u64, count: u32) {
        self.value |= value << self.count;
        self.count += count;
    }

    fn put_code(&mut self, (value, count): (u64, u32), out: &mut Vec<u8>) {
        self.put(value, count);
        while self.count >= 8 {
            out.push(self.value as u8);
            self.value >>= 8;
            self.count -= 8;
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        while self.count > 0 {
            out.push(self.value as u8);
            self.value >>= 8;
            self.count = self.count.saturating_sub(8);
        }
    }
}
