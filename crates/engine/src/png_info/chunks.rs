//! Text chunks of a PNG, read by walking the chunk list ourselves so that a malformed or
//! hostile chunk is skipped, never fatal: the image is decoded separately and is never lost.

/// Text from one tEXt, zTXt or iTXt chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    pub keyword: String,
    pub text: String,
}

/// Text longer than this (after decompression) is ignored: no tool writes megabytes of prompt
/// (ComfyUI's workflow JSON, the largest, is a few hundred kilobytes).
pub const MAX_TEXT: usize = 8 << 20;
/// All text of one PNG together, decompressed: past this the remaining chunks are skipped, so
/// a small file of many compressed chunks cannot expand into gigabytes.
pub const MAX_TOTAL_TEXT: usize = 16 << 20;

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(SIGNATURE)
}

/// The data of the first chunk of type `kind` before `IEND`, if any.
pub fn find_chunk<'a>(bytes: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    find_chunks(bytes, *kind).next()
}

/// The data of every chunk of type `kind`, in file order, up to `IEND` or the first chunk
/// that runs past the end of `bytes`.
pub fn find_chunks(bytes: &[u8], kind: [u8; 4]) -> impl Iterator<Item = &[u8]> {
    let mut pos = if is_png(bytes) {
        SIGNATURE.len()
    } else {
        bytes.len()
    };
    std::iter::from_fn(move || {
        while pos + 8 <= bytes.len() {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let this = &bytes[pos + 4..pos + 8];
            let start = pos + 8;
            let end = start.checked_add(len).filter(|&e| e <= bytes.len())?;
            if this == b"IEND" {
                pos = bytes.len();
                return None;
            }
            pos = end + 4;
            if this == kind {
                return Some(&bytes[start..end]);
            }
        }
        None
    })
}

/// Every readable text chunk, in file order.
pub fn read_text_chunks(bytes: &[u8]) -> Vec<TextChunk> {
    let mut out = vec![];
    if !is_png(bytes) {
        return out;
    }
    let mut pos = SIGNATURE.len();
    let mut total = 0usize;
    while pos + 8 <= bytes.len() && total <= MAX_TOTAL_TEXT {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let start = pos + 8;
        let Some(end) = start.checked_add(len).filter(|&e| e <= bytes.len()) else {
            break;
        };
        let data = &bytes[start..end];
        let chunk = match kind {
            b"tEXt" => text(data),
            b"zTXt" => ztxt(data),
            b"iTXt" => itxt(data),
            _ => None,
        };
        if let Some(c) = chunk {
            total += c.text.len() + c.keyword.len();
            if total <= MAX_TOTAL_TEXT {
                out.push(c);
            }
        }
        if kind == b"IEND" {
            break;
        }
        pos = end + 4; // CRC
    }
    out
}

fn split_keyword(data: &[u8]) -> Option<(String, &[u8])> {
    let nul = data.iter().position(|&b| b == 0)?;
    if nul == 0 || nul > 79 {
        return None;
    }
    Some((latin1(&data[..nul]), &data[nul + 1..]))
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// tEXt is Latin-1 by the standard, but some tools write UTF-8 into it: take it as UTF-8 when it
/// is valid UTF-8, which Latin-1 text with accents almost never is.
fn decode_text_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => latin1(bytes),
    }
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    fdeflate::decompress_to_vec_bounded(data, MAX_TEXT).ok()
}

fn text(data: &[u8]) -> Option<TextChunk> {
    let (keyword, rest) = split_keyword(data)?;
    (rest.len() <= MAX_TEXT).then(|| TextChunk {
        keyword,
        text: decode_text_bytes(rest),
    })
}

fn ztxt(data: &[u8]) -> Option<TextChunk> {
    let (keyword, rest) = split_keyword(data)?;
    let (&method, compressed) = rest.split_first()?;
    if method != 0 {
        return None;
    }
    Some(TextChunk {
        keyword,
        text: decode_text_bytes(&inflate(compressed)?),
    })
}

fn itxt(data: &[u8]) -> Option<TextChunk> {
    let (keyword, rest) = split_keyword(data)?;
    let (&compressed, rest) = rest.split_first()?;
    let (&_method, rest) = rest.split_first()?;
    let lang_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[lang_end + 1..];
    let translated_end = rest.iter().position(|&b| b == 0)?;
    let body = &rest[translated_end + 1..];
    let raw = if compressed == 1 {
        inflate(body)?
    } else {
        body.to_vec()
    };
    if raw.len() > MAX_TEXT {
        return None;
    }
    // iTXt must be UTF-8; a broken sequence becomes U+FFFD rather than losing the whole text.
    Some(TextChunk {
        keyword,
        text: String::from_utf8_lossy(&raw).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(data);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    }

    #[test]
    fn reads_each_kind_and_survives_garbage() {
        let mut png = SIGNATURE.to_vec();
        png.extend(chunk(b"tEXt", b"parameters\0caf\xe9"));
        png.extend(chunk(b"iTXt", "prompt\0\0\0\0\0\u{732b}".as_bytes()));
        png.extend(chunk(b"tEXt", b"\0no keyword"));
        png.extend(chunk(b"iTXt", b"broken\0\0\0\0\0\xff\xfeok"));
        png.extend(chunk(b"zTXt", b"z\0\0not deflate"));
        png.extend(chunk(b"IEND", b""));
        let texts = read_text_chunks(&png);
        assert_eq!(
            texts[0],
            TextChunk {
                keyword: "parameters".into(),
                text: "café".into()
            }
        );
        assert_eq!(texts[1].text, "\u{732b}");
        assert_eq!(texts[2].keyword, "broken");
        assert!(texts[2].text.ends_with("ok"));
        assert_eq!(texts.len(), 3);
    }

    #[test]
    fn a_length_past_the_end_stops_reading() {
        let mut png = SIGNATURE.to_vec();
        png.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
        png.extend_from_slice(b"tEXtabc");
        assert!(read_text_chunks(&png).is_empty());
    }

    /// 400 zTXt chunks of 8 MiB each, compressed into a few megabytes: what is kept stays
    /// within the total bound.
    #[test]
    fn many_compressed_chunks_expand_only_to_the_total_bound() {
        let plain = vec![b'a'; MAX_TEXT];
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&plain, 9);
        let mut png = SIGNATURE.to_vec();
        for i in 0..400 {
            let mut data = format!("k{i}\0\0").into_bytes();
            data.extend_from_slice(&packed);
            png.extend(chunk(b"zTXt", &data));
        }
        assert!(png.len() < 8 << 20, "a small file: {}", png.len());
        let texts = read_text_chunks(&png);
        let total: usize = texts.iter().map(|t| t.text.len()).sum();
        assert!(total <= MAX_TOTAL_TEXT, "{total}");
        assert!(!texts.is_empty(), "the first chunks are still read");
    }
}
