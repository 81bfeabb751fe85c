//! Checks on text that people type and other people are shown.

/// Characters that render as nothing or reorder text (controls, zero-width and bidirectional
/// controls, soft hyphen, fillers, variation selectors, tags, the byte-order mark): refused in
/// names and labels shown to other people, so that one value cannot pass for another in the
/// console or the audit trail.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_told_from_visible_ones() {
        for c in [
            '\u{200B}',
            '\u{202E}',
            '\u{FEFF}',
            '\u{00AD}',
            '\n',
            '\u{E0041}',
        ] {
            assert!(is_invisible(c), "{:?}", c);
        }
        for c in ['a', 'é', 'ß', ' ', '-', '\'', '中'] {
            assert!(!is_invisible(c), "{c:?}");
        }
    }
}
