//! Text to features: normalised tokens, hashed word unigrams and bigrams and character n-grams.
//!
//! The scheme is part of the model's format ([`FEATURE_SCHEME`]): a model is only valid with
//! the features it was trained on, so any change here must bump the scheme number.
//!
//! Identifiers must not become features. Digits are folded to `0` and every run of them to one
//! `0`, so phone numbers, dates, record numbers and doses all look alike; e-mail addresses and
//! web addresses become one token each. Names are rare words: training drops every hash bucket
//! seen in fewer than `min_df` messages, so a name that is not also a common word gets no weight.

/// The version of the feature extraction below. Stored in every model.
pub const FEATURE_SCHEME: u16 = 1;

/// Texts longer than this many bytes are featurised on their first `MAX_FEATURE_BYTES` only
/// (a message's intent shows early; this bounds the work per message).
pub const MAX_FEATURE_BYTES: usize = 16 * 1024;

/// Character n-gram lengths (inclusive), taken within `<token>`.
const CHAR_MIN: usize = 3;
const CHAR_MAX: usize = 5;

/// Normalised tokens of `text`: lower case, apostrophes removed (`can't` = `cant`), digit runs
/// folded to `0`, e-mail addresses to `@email`, web addresses to `@url`.
pub fn tokens(text: &str) -> Vec<String> {
    let text = truncate(text, MAX_FEATURE_BYTES);
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        let lower = chunk.to_lowercase();
        if lower.contains('@') && lower.contains('.') {
            out.push("@email".to_owned());
            continue;
        }
        if lower.starts_with("http:") || lower.starts_with("https:") || lower.starts_with("www.") {
            out.push("@url".to_owned());
            continue;
        }
        let mut cur = String::new();
        let mut last_digit = false;
        for c in lower.chars() {
            if c == '\'' || c == '\u{2019}' || c == '\u{2018}' {
                continue;
            }
            if c.is_numeric() {
                if !last_digit {
                    cur.push('0');
                }
                last_digit = true;
            } else if c.is_alphanumeric() {
                cur.push(c);
                last_digit = false;
            } else {
                last_digit = false;
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// A sparse feature vector: (bucket, value) pairs, buckets unique and sorted, L2 norm 1
/// (empty for a text without tokens).
pub type Features = Vec<(u32, f32)>;

/// Hashes `text`'s features into `1 << hash_bits` buckets.
pub fn featurize(text: &str, hash_bits: u8) -> Features {
    let toks = tokens(text);
    let mask: u64 = (1u64 << hash_bits) - 1;
    let mut buckets: Vec<u32> = Vec::with_capacity(toks.len() * 12);
    let mut push = |h: u64| buckets.push((h & mask) as u32);
    for (i, t) in toks.iter().enumerate() {
        push(fnv1a(&[b"w", t.as_bytes()]));
        if let Some(next) = toks.get(i + 1) {
            push(fnv1a(&[b"b", t.as_bytes(), b" ", next.as_bytes()]));
        }
        if t.starts_with('@') {
            continue;
        }
        let chars: Vec<char> = std::iter::once('<')
            .chain(t.chars())
            .chain(std::iter::once('>'))
            .collect();
        for n in CHAR_MIN..=CHAR_MAX {
            for gram in chars.windows(n) {
                let s: String = gram.iter().collect();
                push(fnv1a(&[b"c", s.as_bytes()]));
            }
        }
    }
    buckets.sort_unstable();
    let mut out: Features = Vec::with_capacity(buckets.len());
    for b in buckets {
        match out.last_mut() {
            Some((last, v)) if *last == b => *v += 1.0,
            _ => out.push((b, 1.0)),
        }
    }
    // Sub-linear counts, then unit length: long letters do not outweigh short texts.
    let mut norm = 0.0f32;
    for (_, v) in &mut out {
        *v = 1.0 + v.ln();
        norm += *v * *v;
    }
    if norm > 0.0 {
        let inv = 1.0 / norm.sqrt();
        for (_, v) in &mut out {
            *v *= inv;
        }
    }
    out
}

/// 64-bit FNV-1a over the concatenated parts: stable across platforms and releases (unlike
/// `std`'s hasher), which the model format needs.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fold_digits_case_apostrophes_and_addresses() {
        let t =
            tokens("Can't BREATHE!! call 555-123-4567 or x@y.com, see https://a.b/c MRN1457047");
        assert_eq!(
            t,
            [
                "cant", "breathe", "call", "0", "0", "0", "or", "@email", "see", "@url", "mrn0"
            ]
        );
    }

    #[test]
    fn identifiers_of_the_same_shape_give_the_same_features() {
        assert_eq!(
            featurize("call me at 555-123-4567 on 3/4/2025", 15),
            featurize("call me at 212-999-0000 on 12/31/1999", 15)
        );
    }

    #[test]
    fn features_are_sorted_unique_and_unit_length() {
        let f = featurize("refill refill please, my lisinopril ran out", 12);
        assert!(f.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(f.iter().all(|(b, _)| *b < (1 << 12)));
        let norm: f32 = f.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(featurize("  ... !! ", 12).is_empty());
    }

    #[test]
    fn hash_is_the_published_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"fo", b"obar"]), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = "ééé";
        assert_eq!(truncate(s, 3), "é");
        assert_eq!(truncate(s, 100), s);
    }
}
