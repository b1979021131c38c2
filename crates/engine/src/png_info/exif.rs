//! Parameters in EXIF, as AUTOMATIC1111 and Forge keep them in JPEG and WebP files: the
//! `parameters` text in the Exif IFD's `UserComment`, behind the 8-byte `UNICODE\0` prefix, in
//! UTF-16 (big-endian, as piexif writes and reads it). Read from a JPEG's APP1 segment or a
//! WebP's `EXIF` chunk by walking them ourselves, every offset checked; written the same way.

/// Largest EXIF block read (a JPEG APP1 segment holds at most 64 KiB; a WebP chunk more).
pub const MAX_EXIF_BYTES: usize = 4 << 20;
/// Most entries read from one IFD.
pub const MAX_IFD_ENTRIES: usize = 512;

const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_USER_COMMENT: u16 = 0x9286;
const TAG_IMAGE_DESCRIPTION: u16 = 0x010e;
const UNICODE: &[u8; 8] = b"UNICODE\0";
const ASCII: &[u8; 8] = b"ASCII\0\0\0";

pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xff, 0xd8, 0xff])
}

pub fn is_webp(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP"
}

/// The text a JPEG's or WebP's EXIF carries: its `UserComment`, else its `ImageDescription`.
pub fn text(bytes: &[u8]) -> Option<String> {
    let tiff = if is_jpeg(bytes) {
        jpeg_exif(bytes)?
    } else if is_webp(bytes) {
        webp_exif(bytes)?
    } else {
        return None;
    };
    let tiff = &tiff[..tiff.len().min(MAX_EXIF_BYTES)];
    let text = tiff_text(tiff)?;
    let text = text.trim_end_matches('\0').to_string();
    (!text.trim().is_empty()).then_some(text)
}

/// The TIFF data of a JPEG's `Exif` APP1 segment.
fn jpeg_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xff {
            return None;
        }
        let marker = bytes[at + 1];
        // Fill bytes, then the markers without a length.
        if marker == 0xff {
            at += 1;
            continue;
        }
        if matches!(marker, 0xd8 | 0x01 | 0xd0..=0xd7) {
            at += 2;
            continue;
        }
        // Start of scan or end of image: no metadata segments follow.
        if matches!(marker, 0xda | 0xd9) {
            return None;
        }
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        let data = bytes.get(at + 4..at + 2 + len.max(2))?;
        if marker == 0xe1 {
            if let Some(tiff) = data.strip_prefix(b"Exif\0\0") {
                return Some(tiff);
            }
        }
        at += 2 + len.max(2);
    }
    None
}

/// The TIFF data of a WebP's `EXIF` chunk (some writers keep the `Exif\0\0` prefix).
fn webp_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let kind = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let data = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        if kind == b"EXIF" {
            return Some(data.strip_prefix(b"Exif\0\0").unwrap_or(data));
        }
        // Chunks are padded to an even length.
        at = at.checked_add(8 + len + (len & 1))?;
    }
    None
}

/// A TIFF block's byte order, read from its header.
#[derive(Clone, Copy)]
struct Tiff<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl<'a> Tiff<'a> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.u32_of(self.data.get(at..at.checked_add(4)?)?)
    }

    /// The first four bytes of `bytes` as a number in this block's byte order.
    fn u32_of(&self, bytes: &[u8]) -> Option<u32> {
        let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// The bytes of tag `tag` in the IFD at `ifd` (inline when at most 4 bytes).
    fn value(&self, ifd: usize, tag: u16) -> Option<&'a [u8]> {
        let count = (self.u16(ifd)? as usize).min(MAX_IFD_ENTRIES);
        (0..count).find_map(|i| {
            let entry = ifd + 2 + i * 12;
            if self.u16(entry)? != tag {
                return None;
            }
            let size = match self.u16(entry + 2)? {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 => 4,
                5 | 10 | 12 => 8,
                _ => return None,
            };
            let len = (self.u32(entry + 4)? as usize).checked_mul(size)?;
            if len <= 4 {
                return self.data.get(entry + 8..entry + 8 + len);
            }
            let offset = self.u32(entry + 8)? as usize;
            self.data.get(offset..offset.checked_add(len)?)
        })
    }
}

fn tiff_text(data: &[u8]) -> Option<String> {
    let big_endian = match data.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let tiff = Tiff { data, big_endian };
    if tiff.u16(2)? != 42 {
        return None;
    }
    let ifd0 = tiff.u32(4)? as usize;
    let from_exif_ifd = tiff
        .value(ifd0, TAG_EXIF_IFD)
        .and_then(|v| tiff.u32_of(v))
        .and_then(|exif| tiff.value(exif as usize, TAG_USER_COMMENT))
        .and_then(user_comment);
    from_exif_ifd.or_else(|| {
        tiff.value(ifd0, TAG_IMAGE_DESCRIPTION)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// An EXIF `UserComment`: its 8-byte character code, then the text.
fn user_comment(v: &[u8]) -> Option<String> {
    let (code, text) = (v.get(..8)?, &v[8..]);
    match code {
        c if c == UNICODE => Some(utf16(text)),
        c if c == ASCII => Some(text.iter().map(|&b| b as char).collect()),
        // An undefined code (eight zero bytes, or anything else) that tools fill with UTF-8.
        _ => Some(String::from_utf8_lossy(text).into_owned()),
    }
}

/// UTF-16 text of either byte order: piexif writes big-endian, but some tools write
/// little-endian. ASCII-heavy text has its zero bytes on the high side, which tells them apart.
fn utf16(bytes: &[u8]) -> String {
    let pairs = bytes.chunks_exact(2);
    let zeros_first = pairs.clone().filter(|p| p[0] == 0 && p[1] != 0).count();
    let zeros_second = pairs.clone().filter(|p| p[1] == 0 && p[0] != 0).count();
    let units: Vec<u16> = if zeros_second > zeros_first {
        pairs.map(|p| u16::from_le_bytes([p[0], p[1]])).collect()
    } else {
        pairs.map(|p| u16::from_be_bytes([p[0], p[1]])).collect()
    };
    String::from_utf16_lossy(&units)
}

/// A big-endian TIFF block with an Exif IFD holding `text` as a `UNICODE` `UserComment`, as
/// piexif (and so AUTOMATIC1111) writes it.
pub fn exif_block(text: &str) -> Vec<u8> {
    let mut comment = UNICODE.to_vec();
    for unit in text.encode_utf16() {
        comment.extend_from_slice(&unit.to_be_bytes());
    }
    let mut out = b"MM\0\x2a".to_vec();
    out.extend_from_slice(&8u32.to_be_bytes());
    // IFD0 at 8: one entry (the Exif IFD's offset), then no next IFD.
    let exif_ifd = 8 + 2 + 12 + 4;
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&TAG_EXIF_IFD.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&(exif_ifd as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    // The Exif IFD: one entry (UserComment, UNDEFINED), its data after it.
    let data_at = exif_ifd + 2 + 12 + 4;
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&TAG_USER_COMMENT.to_be_bytes());
    out.extend_from_slice(&7u16.to_be_bytes());
    out.extend_from_slice(&(comment.len() as u32).to_be_bytes());
    out.extend_from_slice(&(data_at as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&comment);
    out
}

/// A JPEG (`encoded`, as an encoder wrote it) with an `Exif` APP1 segment holding `text`.
/// An APP1 segment holds at most 64 KiB: longer text is an error, not a truncation.
pub fn jpeg_with_text(encoded: &[u8], text: &str) -> std::io::Result<Vec<u8>> {
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&exif_block(text));
    let len = segment.len() + 2;
    if len > u16::MAX as usize {
        return Err(std::io::Error::other(format!(
            "the parameters take {} KiB as EXIF, more than a JPEG holds (64 KiB): save as PNG",
            len >> 10
        )));
    }
    if !is_jpeg(encoded) {
        return Err(std::io::Error::other("the encoder did not write a JPEG"));
    }
    // After the JFIF APP0 segment when there is one: strict JFIF readers expect it first.
    let at = match encoded.get(2..6) {
        Some([0xff, 0xe0, hi, lo]) => 4 + u16::from_be_bytes([*hi, *lo]) as usize,
        _ => 2,
    }
    .min(encoded.len());
    let mut out = encoded[..at].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&segment);
    out.extend_from_slice(&encoded[at..]);
    Ok(out)
}

/// A WebP (`encoded`, a simple lossless or lossy file of `width`×`height`) in the extended
/// format with an `EXIF` chunk holding `text`.
pub fn webp_with_text(
    encoded: &[u8],
    width: usize,
    height: usize,
    text: &str,
) -> std::io::Result<Vec<u8>> {
    if !is_webp(encoded) || width == 0 || height == 0 || width > 1 << 24 || height > 1 << 24 {
        return Err(std::io::Error::other("not a simple WebP of that size"));
    }
    let image = &encoded[12..];
    if !matches!(&image[..4.min(image.len())], b"VP8L" | b"VP8 ") {
        return Err(std::io::Error::other("the encoder wrote an extended WebP"));
    }
    let exif = exif_block(text);
    let mut body = b"WEBP".to_vec();
    // VP8X: flags (EXIF), three reserved bytes, canvas width − 1 and height − 1 (24 bits each).
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x08, 0, 0, 0]);
    body.extend_from_slice(&((width - 1) as u32).to_le_bytes()[..3]);
    body.extend_from_slice(&((height - 1) as u32).to_le_bytes()[..3]);
    body.extend_from_slice(image);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    body.extend_from_slice(&exif);
    if exif.len() % 2 == 1 {
        body.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "a heron, (ink:1.2), 猫\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 7";

    fn jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        let mut buf = vec![];
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
            .encode_image(&img)
            .unwrap();
        buf
    }

    #[test]
    fn jpeg_and_webp_round_trip_and_still_decode() {
        let out = jpeg_with_text(&jpeg(), TEXT).unwrap();
        assert_eq!(text(&out).as_deref(), Some(TEXT));
        // JFIF's APP0 stays first.
        assert_eq!(&out[2..4], &[0xff, 0xe0]);
        let decoded = image::load_from_memory(&out).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 8));
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        let mut webp = vec![];
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(img.as_raw(), 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        let out = webp_with_text(&webp, 16, 8, TEXT).unwrap();
        assert_eq!(text(&out).as_deref(), Some(TEXT));
        let decoded = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(decoded.as_raw(), img.as_raw());
    }

    /// Little-endian TIFF and UTF-16, as some tools write them, and ASCII comments.
    #[test]
    fn other_byte_orders_and_codes() {
        let le: Vec<u8> = TEXT.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let mut comment = UNICODE.to_vec();
        comment.extend_from_slice(&le);
        assert_eq!(user_comment(&comment).as_deref(), Some(TEXT));
        let mut ascii = ASCII.to_vec();
        ascii.extend_from_slice(b"Steps: 5");
        assert_eq!(user_comment(&ascii).as_deref(), Some("Steps: 5"));
        // The same block in little-endian TIFF order.
        let mut tiff = b"II\x2a\0".to_vec();
        tiff.extend_from_slice(&8u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&TAG_EXIF_IFD.to_le_bytes());
        tiff.extend_from_slice(&4u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&26u32.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&TAG_USER_COMMENT.to_le_bytes());
        tiff.extend_from_slice(&7u16.to_le_bytes());
        tiff.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tiff.extend_from_slice(&44u32.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(&comment);
        assert_eq!(tiff_text(&tiff).as_deref(), Some(TEXT));
    }

    /// Offsets past the end, loops, huge counts, odd UTF-16 and truncation give nothing or
    /// replacement characters, never a panic.
    #[test]
    fn hostile_exif_is_bounded() {
        let good = jpeg_with_text(&jpeg(), TEXT).unwrap();
        for cut in [3, 6, 10, 20, 40, 100, good.len() - 1] {
            let _ = text(&good[..cut]);
        }
        let block = exif_block(TEXT);
        // Every single-byte corruption of the TIFF block.
        for i in 0..block.len().min(80) {
            for v in [0u8, 0xff, 0x7f] {
                let mut b = block.clone();
                b[i] = v;
                let _ = tiff_text(&b);
            }
        }
        // An IFD claiming 65535 entries, a comment claiming 4 GiB.
        let mut many = block.clone();
        many[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
        let _ = tiff_text(&many);
        let mut huge = block.clone();
        huge[26 + 6..26 + 10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(tiff_text(&huge), None);
        // An odd number of UTF-16 bytes and lone surrogates.
        let mut odd = UNICODE.to_vec();
        odd.extend_from_slice(&[0xd8, 0x00, 0x00, 0x41, 0x00]);
        assert_eq!(user_comment(&odd).as_deref(), Some("\u{fffd}A"));
        // A WebP whose chunk sizes overflow.
        let mut webp = b"RIFF\0\0\0\0WEBPEXIF".to_vec();
        webp.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(text(&webp), None);
        // Too long for a JPEG: an error, not a truncated record.
        assert!(jpeg_with_text(&jpeg(), &"x".repeat(40_000)).is_err());
    }
}
