//! "Stealth" parameters hidden in the pixels' lowest bits, as AUTOMATIC1111's
//! `stealth_pnginfo` extension and NovelAI write them: the alpha channel's (or, without alpha,
//! the red, green and blue channels') least significant bits, pixels taken column by column,
//! form a bit stream: a 15-byte signature (`stealth_pnginfo` / `stealth_pngcomp` in alpha,
//! `stealth_rgbinfo` / `stealth_rgbcomp` in RGB), a 32-bit length in bits, then the text —
//! gzip-compressed for the `comp` signatures. Every length is checked against the pixels there
//! are and the bounds here.

/// Longest hidden text, decompressed.
pub const MAX_STEALTH_TEXT: usize = 4 << 20;

const SIGNATURE_BITS: usize = 15 * 8;

/// Where the bits are hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channels {
    Alpha,
    Rgb,
}

/// The text hidden in an 8-bit RGBA (or RGB, `has_alpha` false) image of `width`×`height`,
/// row-major `pixels`.
pub fn read(pixels: &[u8], width: usize, height: usize, has_alpha: bool) -> Option<String> {
    let channels = if has_alpha { 4 } else { 3 };
    if pixels.len() != width.checked_mul(height)?.checked_mul(channels)? {
        return None;
    }
    let mut modes = vec![];
    if has_alpha {
        modes.push(Channels::Alpha);
    }
    modes.push(Channels::Rgb);
    modes
        .into_iter()
        .find_map(|mode| read_mode(pixels, width, height, channels, mode))
}

fn read_mode(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    mode: Channels,
) -> Option<String> {
    let per_pixel: &[usize] = match mode {
        Channels::Alpha => &[3],
        Channels::Rgb => &[0, 1, 2],
    };
    // Column by column, as the extension reads them.
    let mut bits = (0..width)
        .flat_map(move |x| (0..height).map(move |y| (y * width + x) * channels))
        .flat_map(move |at| per_pixel.iter().map(move |c| pixels[at + c] & 1));
    let available = width * height * per_pixel.len();
    let signature = take_bytes(SIGNATURE_BITS / 8, &mut bits)?;
    let compressed = match (mode, signature.as_slice()) {
        (Channels::Alpha, b"stealth_pnginfo") | (Channels::Rgb, b"stealth_rgbinfo") => false,
        (Channels::Alpha, b"stealth_pngcomp") | (Channels::Rgb, b"stealth_rgbcomp") => true,
        _ => return None,
    };
    let len_bits = take_bytes(4, &mut bits)?;
    let len_bits = u32::from_be_bytes(len_bits.try_into().ok()?) as usize;
    let limit_bits = if compressed {
        // gzip rarely shrinks text below a tenth; more would be a bomb.
        MAX_STEALTH_TEXT
    } else {
        MAX_STEALTH_TEXT * 8
    };
    if len_bits == 0 || len_bits > available - SIGNATURE_BITS - 32 || len_bits > limit_bits {
        return None;
    }
    let data = take_bytes(len_bits / 8, &mut bits)?;
    let text = if compressed { gunzip(&data)? } else { data };
    Some(String::from_utf8_lossy(&text).into_owned())
}

/// The next `n` bytes of a bit stream, most significant bit first.
fn take_bytes(n: usize, bits: &mut dyn Iterator<Item = u8>) -> Option<Vec<u8>> {
    (0..n)
        .map(|_| (0..8).try_fold(0u8, |byte, _| Some(byte << 1 | bits.next()?)))
        .collect()
}

/// A gzip member's content, at most `MAX_STEALTH_TEXT` bytes.
fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 18 || data[..3] != [0x1f, 0x8b, 8] {
        return None;
    }
    let flags = data[3];
    let mut at = 10;
    if flags & 4 != 0 {
        let extra = u16::from_le_bytes([*data.get(at)?, *data.get(at + 1)?]) as usize;
        at += 2 + extra;
    }
    for flag in [8, 16] {
        // File name, comment: zero-terminated.
        if flags & flag != 0 {
            at += data.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    miniz_oxide::inflate::decompress_to_vec_with_limit(data.get(at..)?, MAX_STEALTH_TEXT).ok()
}

/// Hides `text` in the alpha channel of RGBA `pixels` as the extension does (for tests and for
/// anyone who wants it).
pub fn write_alpha(pixels: &mut [u8], width: usize, height: usize, text: &[u8], compressed: bool) {
    let signature: &[u8] = if compressed {
        b"stealth_pngcomp"
    } else {
        b"stealth_pnginfo"
    };
    let mut stream = signature.to_vec();
    stream.extend_from_slice(&((text.len() * 8) as u32).to_be_bytes());
    stream.extend_from_slice(text);
    let bits = stream
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1));
    let positions = (0..width).flat_map(|x| (0..height).map(move |y| (y * width + x) * 4 + 3));
    for (at, bit) in positions.zip(bits) {
        pixels[at] = (pixels[at] & !1) | bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        out.extend(miniz_oxide::deflate::compress_to_vec(text, 6));
        // CRC and size are not checked by the extension's reader either.
        out.extend_from_slice(&[0; 8]);
        out
    }

    #[test]
    fn alpha_and_compressed_alpha_round_trip() {
        let (w, h) = (40, 30);
        let text = "a heron\nNegative prompt: blurry\nSteps: 20, Seed: 5";
        for compressed in [false, true] {
            let mut px = vec![200u8; w * h * 4];
            let payload = if compressed {
                gzip(text.as_bytes())
            } else {
                text.as_bytes().to_vec()
            };
            write_alpha(&mut px, w, h, &payload, compressed);
            assert_eq!(read(&px, w, h, true).as_deref(), Some(text));
        }
        // Nothing hidden: nothing read.
        assert_eq!(read(&vec![255u8; w * h * 4], w, h, true), None);
    }

    #[test]
    fn rgb_bits() {
        let (w, h) = (30, 20);
        let text = b"Steps: 4, Seed: 9";
        let mut stream = b"stealth_rgbinfo".to_vec();
        stream.extend_from_slice(&((text.len() * 8) as u32).to_be_bytes());
        stream.extend_from_slice(text);
        let bits: Vec<u8> = stream
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect();
        let mut px = vec![100u8; w * h * 3];
        let mut k = 0;
        'outer: for x in 0..w {
            for y in 0..h {
                for c in 0..3 {
                    if k == bits.len() {
                        break 'outer;
                    }
                    let at = (y * w + x) * 3 + c;
                    px[at] = (px[at] & !1) | bits[k];
                    k += 1;
                }
            }
        }
        assert_eq!(read(&px, w, h, false).as_deref(), Some("Steps: 4, Seed: 9"));
    }

    /// Lengths past the pixels there are or the bounds, bombs and tiny images give nothing.
    #[test]
    fn hostile_streams_are_bounded() {
        let (w, h) = (64, 64);
        let mut px = vec![200u8; w * h * 4];
        write_alpha(&mut px, w, h, b"x", false);
        // Claim 2^32 − 1 bits.
        let mut stream_px = px.clone();
        let positions: Vec<usize> = (0..w)
            .flat_map(|x| (0..h).map(move |y| (y * w + x) * 4 + 3))
            .collect();
        for p in &positions[120..152] {
            stream_px[*p] |= 1;
        }
        assert_eq!(read(&stream_px, w, h, true), None);
        // A gzip bomb: 64 MiB of zeros in a few kilobytes.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let (bw, bh) = (400, 400);
        let mut big = vec![200u8; bw * bh * 4];
        write_alpha(&mut big, bw, bh, &bomb, true);
        assert_eq!(read(&big, bw, bh, true), None);
        // Too few pixels for a signature; a buffer of the wrong size.
        assert_eq!(read(&[1u8; 4 * 10], 10, 1, true), None);
        assert_eq!(read(&[1u8; 7], 10, 10, true), None);
        // Not gzip behind the `comp` signature.
        let mut fake = vec![200u8; w * h * 4];
        write_alpha(&mut fake, w, h, b"plain text, not gzip at all", true);
        assert_eq!(read(&fake, w, h, true), None);
    }
}
