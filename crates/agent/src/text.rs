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

/// A first sentence longer than this many words is split at its first clause break.
const LONG_FIRST_SENTENCE_WORDS: usize = 10;
/// The shortest first piece such a split makes.
const MIN_FIRST_PIECE_WORDS: usize = 3;

/// The pieces a reply is synthesised in: its sentences, except that a long first sentence
/// is split after its first comma, semicolon or colon (three words in at least), so the
/// caller hears the start of the answer after one short synthesis rather than a long one;
/// the rest follows while the first piece plays. Joined with spaces, the pieces are the
/// sentences again.
pub fn speech_parts(text: &str) -> Vec<String> {
    let mut parts = sentences(text);
    let Some(first) = parts.first() else { return parts };
    if let Some(at) = first_clause_end(first) {
        let (head, tail) = first.split_at(at);
        let (head, tail) = (head.trim().to_owned(), tail.trim().to_owned());
        parts.splice(0..1, [head, tail]);
    }
    parts
}

/// Takes the next piece to synthesise from the front of `buffer`, text that is still
/// growing (a streamed reply): a sentence once its end is followed by more text (`3.` may
/// yet become `3.50`), or, for the reply's `first` piece, its first clause as
/// [`speech_parts`] would split it. `None`: wait for more text.
pub fn take_piece(buffer: &mut String, first: bool) -> Option<String> {
    loop {
        let mut end = None;
        let mut chars = buffer.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if matches!(c, '.' | '!' | '?') && chars.peek().is_some_and(|(_, next)| next.is_whitespace()) {
                end = Some(i + c.len_utf8());
                break;
            }
        }
        let clause = if first { first_clause_end(&buffer[..end.unwrap_or(buffer.len())]) } else { None };
        let at = clause.or(end)?;
        let piece = buffer[..at].trim().to_owned();
        buffer.drain(..at);
        if !piece.is_empty() {
            return Some(piece);
        }
    }
}

/// Where a long first sentence is split: after its first comma, semicolon or colon three
/// words in at least, when it has more than [`LONG_FIRST_SENTENCE_WORDS`] words and text
/// follows the break.
fn first_clause_end(sentence: &str) -> Option<usize> {
    if sentence.split_whitespace().count() <= LONG_FIRST_SENTENCE_WORDS {
        return None;
    }
    let (mut words, mut offset) = (0, 0);
    for token in sentence.split_inclusive(char::is_whitespace) {
        offset += token.len();
        let word = token.trim();
        if word.is_empty() {
            continue;
        }
        words += 1;
        if words >= MIN_FIRST_PIECE_WORDS && word.ends_with([',', ';', ':']) {
            return (!sentence[offset..].trim().is_empty()).then_some(offset);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_first_sentence_is_spoken_from_its_first_clause() {
        let long = "Our office is open from eight, and on Saturdays from nine until one, closed on Sundays. Thanks.";
        assert_eq!(
            speech_parts(long),
            ["Our office is open from eight,", "and on Saturdays from nine until one, closed on Sundays.", "Thanks."]
        );
        assert_eq!(speech_parts(long).join(" "), sentences(long).join(" "));
        // Short first sentences, and long ones without an early clause break, stay whole.
        assert_eq!(speech_parts("Yes, of course. Anything else?"), ["Yes, of course.", "Anything else?"]);
        let no_break = "One two three four five six seven eight nine ten eleven twelve.";
        assert_eq!(speech_parts(no_break), [no_break]);
        // A break in the first two words is too early to split at.
        let early = "Well, one two three four five six seven eight nine ten eleven.";
        assert_eq!(speech_parts(early), [early]);
        assert!(speech_parts("").is_empty());
    }

    #[test]
    fn a_streamed_reply_is_taken_piece_by_piece_as_the_pieces_complete() {
        let mut buffer = String::new();
        let mut pieces = Vec::new();
        let long = "Our office is open from eight, and on Saturdays from nine until one, closed on Sundays. It costs 3.50 today. OK?";
        for (i, token) in long.split_inclusive(' ').enumerate() {
            buffer.push_str(token);
            while let Some(piece) = take_piece(&mut buffer, pieces.is_empty()) {
                pieces.push((i, piece));
            }
        }
        // The first clause goes as soon as the sentence is known to be long (its eleventh
        // word); "3." waits for the next token; the last sentence waits for the end.
        assert_eq!(pieces[0], (10, "Our office is open from eight,".to_owned()));
        assert_eq!(pieces[1].1, "and on Saturdays from nine until one, closed on Sundays.");
        assert_eq!(pieces[2].1, "It costs 3.50 today.");
        assert_eq!(buffer.trim(), "OK?");
        assert_eq!(take_piece(&mut buffer, false), None);
        // Short sentences are not split.
        let mut buffer = "Yes, of course. Anything".to_owned();
        assert_eq!(take_piece(&mut buffer, true).as_deref(), Some("Yes, of course."));
        assert_eq!(take_piece(&mut buffer, false), None);
    }

    #[test]
    fn replies_split_at_sentence_ends_but_not_inside_numbers() {
        assert_eq!(sentences("Hi there! It costs 3.50 today. OK?"), ["Hi there!", "It costs 3.50 today.", "OK?"]);
        assert_eq!(sentences("  no end "), ["no end"]);
        assert!(sentences(" ").is_empty());
    }
}
