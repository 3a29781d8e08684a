//! Text helpers shared by the engines and the voices.

/// Splits a reply into sentences for synthesis (Piper synthesises per sentence; the first
/// plays while the next is made). A sentence ends at `.`, `!` or `?` followed by
/// whitespace or the end; the pieces keep their punctuation. Blank pieces are dropped.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends = matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|next| next.is_whitespace());
        if ends {
            let sentence = current.trim().to_owned();
            if !sentence.is_empty() {
                out.push(sentence);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_at_sentence_ends_but_not_inside_numbers() {
        assert_eq!(sentences("Hi there! It costs 3.50 today. OK?"), ["Hi there!", "It costs 3.50 today.", "OK?"]);
        assert_eq!(sentences("  no end "), ["no end"]);
        assert!(sentences(" ").is_empty());
    }
}
