//! AUTOMATIC1111's prompt syntax: `(word)` ×1.1, `[word]` ÷1.1, `(word:1.3)`, escapes `\(`,
//! `BREAK` to start a new 75-token chunk, and `<lora:NAME:W>` extra-network tags (taken out).

/// A piece of prompt text with the weight its brackets give it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fragment {
    Text { text: String, weight: f64 },
    Break,
}

const ROUND: f64 = 1.1;
const SQUARE: f64 = 1.0 / 1.1;

enum Token<'a> {
    Escaped(char),
    Open(char),
    CloseWithWeight(f64),
    Close(char),
    Text(&'a str),
}

/// Splits the prompt as AUTOMATIC1111's `re_attention` does.
fn lex(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut tokens = vec![];
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let c = bytes[i] as char;
        match c {
            '\\' => {
                let next = rest[1..].chars().next();
                match next {
                    Some(n @ ('(' | ')' | '[' | ']' | '\\')) => {
                        tokens.push(Token::Escaped(n));
                        i += 2;
                    }
                    _ => {
                        tokens.push(Token::Text("\\"));
                        i += 1;
                    }
                }
            }
            '(' | '[' => {
                tokens.push(Token::Open(c));
                i += 1;
            }
            ')' | ']' => {
                tokens.push(Token::Close(c));
                i += 1;
            }
            ':' => match weight_suffix(rest) {
                Some((w, len)) => {
                    tokens.push(Token::CloseWithWeight(w));
                    i += len;
                }
                None => {
                    tokens.push(Token::Text(":"));
                    i += 1;
                }
            },
            _ => {
                let end = rest
                    .find(['\\', '(', ')', '[', ']', ':'])
                    .unwrap_or(rest.len());
                tokens.push(Token::Text(&rest[..end]));
                i += end;
            }
        }
    }
    tokens
}

/// `:\s*([+-]?[.\d]+)\s*\)` at the start of `s`: the weight and the length matched.
fn weight_suffix(s: &str) -> Option<(f64, usize)> {
    let after_colon = &s[1..];
    let trimmed = after_colon.trim_start();
    let mut pos = 1 + after_colon.len() - trimmed.len();
    let num_len = trimmed
        .char_indices()
        .take_while(|&(k, ch)| {
            ch.is_ascii_digit() || ch == '.' || (k == 0 && (ch == '+' || ch == '-'))
        })
        .count();
    let number = &trimmed[..num_len];
    if !number.chars().any(|ch| ch.is_ascii_digit() || ch == '.') {
        return None;
    }
    pos += num_len;
    let tail = &s[pos..];
    let tail_trimmed = tail.trim_start();
    pos += tail.len() - tail_trimmed.len();
    if !tail_trimmed.starts_with(')') {
        return None;
    }
    // Python's float() rejects things like "1.2.3" or "."; AUTOMATIC1111 would raise there, we
    // keep the text literally instead.
    let weight: f64 = number.parse().ok()?;
    Some((weight, pos + 1))
}

/// An extra network a prompt names, as AUTOMATIC1111 writes it: `<lora:NAME:0.8>` has kind
/// `lora` and arguments `NAME`, `0.8`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptNetwork {
    pub kind: String,
    pub args: Vec<String>,
}

/// The prompt without its `<kind:args>` tags, and the tags in order. As in AUTOMATIC1111, a tag
/// is `<`, a word, `:`, then anything but `>` up to `>`; other `<…>` text stays in the prompt.
pub fn extra_networks(text: &str) -> (String, Vec<PromptNetwork>) {
    let spans = extra_network_spans(text);
    let mut clean = String::with_capacity(text.len());
    let mut at = 0;
    for (range, _) in &spans {
        clean.push_str(&text[at..range.start]);
        at = range.end;
    }
    clean.push_str(&text[at..]);
    (clean, spans.into_iter().map(|(_, n)| n).collect())
}

/// Each `<kind:args>` tag of a prompt and the byte range it takes (for editing it in place).
pub fn extra_network_spans(text: &str) -> Vec<(std::ops::Range<usize>, PromptNetwork)> {
    let mut found = vec![];
    let mut from = 0;
    while let Some(offset) = text[from..].find('<') {
        let start = from + offset;
        let after = &text[start + 1..];
        let tag = after.find('>').map(|end| &after[..end]).and_then(|inner| {
            let (kind, args) = inner.split_once(':')?;
            let word = !kind.is_empty() && kind.chars().all(|c| c.is_alphanumeric() || c == '_');
            (word && !args.is_empty()).then_some((inner.len(), kind, args))
        });
        match tag {
            Some((len, kind, args)) => {
                let end = start + 1 + len + 1;
                found.push((
                    start..end,
                    PromptNetwork {
                        kind: kind.to_string(),
                        args: args.split(':').map(|a| a.trim().to_string()).collect(),
                    },
                ));
                from = end;
            }
            None => from = start + 1,
        }
    }
    found
}

/// Parses a prompt into weighted fragments, merging neighbours of equal weight. Extra-network
/// tags (`<lora:…>`) are not words: they are left out (the job applies them).
pub fn parse(text: &str) -> Vec<Fragment> {
    let (text, _) = extra_networks(text);
    let text = text.as_str();
    let mut res: Vec<(String, f64)> = vec![];
    let mut round: Vec<usize> = vec![];
    let mut square: Vec<usize> = vec![];
    const BREAK_WEIGHT: f64 = -1.0;
    let multiply = |res: &mut Vec<(String, f64)>, from: usize, m: f64| {
        for item in res.iter_mut().skip(from) {
            if !(item.1 == BREAK_WEIGHT && item.0 == "BREAK") {
                item.1 *= m;
            }
        }
    };
    for token in lex(text) {
        match token {
            Token::Escaped(c) => res.push((c.to_string(), 1.0)),
            Token::Open('(') => round.push(res.len()),
            Token::Open(_) => square.push(res.len()),
            Token::CloseWithWeight(w) if !round.is_empty() => {
                let from = round.pop().unwrap_or(0);
                multiply(&mut res, from, w);
            }
            Token::Close(')') if !round.is_empty() => {
                let from = round.pop().unwrap_or(0);
                multiply(&mut res, from, ROUND);
            }
            Token::Close(']') if !square.is_empty() => {
                let from = square.pop().unwrap_or(0);
                multiply(&mut res, from, SQUARE);
            }
            Token::CloseWithWeight(_) => push_text(&mut res, ":"),
            Token::Close(c) => push_text(&mut res, &c.to_string()),
            Token::Text(t) => push_text(&mut res, t),
        }
    }
    for from in round {
        multiply(&mut res, from, ROUND);
    }
    for from in square {
        multiply(&mut res, from, SQUARE);
    }
    if res.is_empty() {
        res.push((String::new(), 1.0));
    }
    let mut merged: Vec<(String, f64)> = vec![];
    for (text, w) in res {
        match merged.last_mut() {
            Some(last) if last.1 == w && w != BREAK_WEIGHT => last.0.push_str(&text),
            _ => merged.push((text, w)),
        }
    }
    merged
        .into_iter()
        .map(|(text, weight)| {
            // A negative emphasis of exactly -1 is text; only the keyword breaks.
            if weight == BREAK_WEIGHT && text == "BREAK" {
                Fragment::Break
            } else {
                Fragment::Text { text, weight }
            }
        })
        .collect()
}

/// Text outside brackets, split at `BREAK` keywords (a whole word, in capitals).
fn push_text(res: &mut Vec<(String, f64)>, text: &str) {
    let mut parts = vec![];
    let mut rest = text;
    while let Some(at) = find_break(rest) {
        parts.push(rest[..at].trim_end());
        rest = rest[at + 5..].trim_start();
    }
    parts.push(rest);
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            res.push(("BREAK".into(), -1.0));
        }
        res.push((part.to_string(), 1.0));
    }
}

fn find_break(s: &str) -> Option<usize> {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(k) = s[from..].find("BREAK") {
        let at = from + k;
        let before = s[..at].chars().next_back();
        let after = s[at + 5..].chars().next();
        if !is_word(before) && !is_word(after) {
            return Some(at);
        }
        from = at + 5;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_network_tags_are_taken_out() {
        let (clean, tags) = extra_networks("a <lora:ink:0.7> cat, <lyco:x:1:0.5>, a < b, <3 me>");
        assert_eq!(clean, "a  cat, , a < b, <3 me>");
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].kind, "lora");
        assert_eq!(tags[0].args, ["ink", "0.7"]);
        assert_eq!(tags[1].args, ["x", "1", "0.5"]);
        assert!(matches!(
            parse("<lora:ink:1>cat").as_slice(),
            [Fragment::Text { text, .. }] if text == "cat"
        ));
    }

    fn texts(prompt: &str) -> Vec<(String, f64)> {
        parse(prompt)
            .into_iter()
            .map(|f| match f {
                Fragment::Text { text, weight } => (text, (weight * 1e6).round() / 1e6),
                Fragment::Break => ("BREAK".into(), -1.0),
            })
            .collect()
    }

    fn t(s: &str, w: f64) -> (String, f64) {
        (s.to_string(), w)
    }

    // Expectations from the docstring of AUTOMATIC1111's `parse_prompt_attention`.
    #[test]
    fn matches_automatic1111_examples() {
        assert_eq!(texts("normal text"), vec![t("normal text", 1.0)]);
        assert_eq!(
            texts("an (important) word"),
            vec![t("an ", 1.0), t("important", 1.1), t(" word", 1.0)]
        );
        assert_eq!(texts("(unbalanced"), vec![t("unbalanced", 1.1)]);
        assert_eq!(texts("\\(literal\\]"), vec![t("(literal]", 1.0)]);
        assert_eq!(
            texts("(unnecessary)(parens)"),
            vec![t("unnecessaryparens", 1.1)]
        );
        assert_eq!(
            texts("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            vec![
                t("a ", 1.0),
                t("house", 1.5730),
                t(" ", 1.1),
                t("on", 1.0),
                t(" a ", 1.1),
                t("hill", 0.55),
                t(", sun, ", 1.1),
                t("sky", 1.4641),
                t(".", 1.1),
            ]
        );
    }

    #[test]
    fn weights_and_nesting() {
        assert_eq!(
            texts("(masterpiece:1.2), cat"),
            vec![t("masterpiece", 1.2), t(", cat", 1.0)]
        );
        assert_eq!(texts("[[dim]]"), vec![t("dim", 0.826446)]);
        assert_eq!(texts("((a) b)"), vec![t("a", 1.21), t(" b", 1.1)]);
        assert_eq!(texts("(a: 0.5 )"), vec![t("a", 0.5)]);
        assert_eq!(texts("time: 5pm"), vec![t("time: 5pm", 1.0)]);
    }

    #[test]
    fn empty_and_stray_brackets() {
        assert_eq!(texts(""), vec![t("", 1.0)]);
        assert_eq!(texts("a ) b ] c"), vec![t("a ) b ] c", 1.0)]);
        assert_eq!(texts("\\\\ back"), vec![t("\\ back", 1.0)]);
    }

    #[test]
    fn break_splits_chunks() {
        assert_eq!(
            texts("a cat BREAK a dog"),
            vec![t("a cat", 1.0), t("BREAK", -1.0), t("a dog", 1.0)]
        );
        assert_eq!(texts("BREAKFAST"), vec![t("BREAKFAST", 1.0)]);
        assert_eq!(
            parse("(cat:-1) BREAK dog"),
            vec![
                Fragment::Text {
                    text: "cat".into(),
                    weight: -1.0
                },
                Fragment::Text {
                    text: "".into(),
                    weight: 1.0
                },
                Fragment::Break,
                Fragment::Text {
                    text: "dog".into(),
                    weight: 1.0
                },
            ]
        );
    }
}
