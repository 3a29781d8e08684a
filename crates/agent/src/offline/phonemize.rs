//! Text to IPA phonemes as Piper's own phonemiser makes them: espeak-ng in IPA mode, no tie
//! characters, clause punctuation put back as phonemes, one phoneme list per sentence.
//!
//! espeak-ng runs as a process with fixed arguments; the text (tenant input) goes on stdin,
//! never as an argument, and the process is killed at the deadline. One clause per stdin
//! line, so output line k is clause k (espeak prints one line per clause, without its
//! punctuation).

use std::process::Stdio;
use std::time::Duration;

use unicode_normalization::UnicodeNormalization;

use super::child::{ChildError, run_with_input};
use crate::provider::ProviderError;

const DEADLINE: Duration = Duration::from_secs(5);

/// The phonemes of `text`, one list per sentence, for espeak voice `voice` (a fixed
/// identifier from the Piper voice's config, never tenant input).
pub async fn phonemize(voice: &str, text: &str) -> Result<Vec<Vec<char>>, ProviderError> {
    let clauses = split_clauses(&normalize(text));
    if clauses.is_empty() {
        return Ok(Vec::new());
    }
    let input: String = clauses.iter().map(|(clause, _)| format!("{}\n", clause.trim())).collect();
    let mut lines = espeak(voice, &input).await?;
    if lines.len() != clauses.len() {
        // espeak split a clause itself (an abbreviation): ask clause by clause.
        lines = Vec::with_capacity(clauses.len());
        for (clause, _) in &clauses {
            lines.push(espeak(voice, &format!("{}\n", clause.trim())).await?.join(" "));
        }
    }
    let mut sentences = Vec::new();
    let mut current = Vec::new();
    for ((_, terminator), line) in clauses.iter().zip(lines) {
        clean_clause(&line, &mut current);
        current.extend(terminator_phonemes(*terminator).chars());
        if matches!(terminator, '.' | '?' | '!') {
            sentences.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        sentences.push(current);
    }
    Ok(sentences)
}

/// What espeak would read as markup or not at all: `[[phonemes]]`, control characters.
fn normalize(text: &str) -> String {
    text.replace('…', "...")
        .replace(['—', '–'], ", ")
        .chars()
        .map(|c| if c.is_control() || c == '[' || c == ']' { ' ' } else { c })
        .collect()
}

fn terminator_phonemes(terminator: char) -> &'static str {
    match terminator {
        '.' => ".",
        '?' => "?",
        '!' => "!",
        ',' => ", ",
        ':' => ": ",
        ';' => "; ",
        _ => "",
    }
}

/// NFD, without espeak's language-switch flags `(en)` and tie or joiner characters.
fn clean_clause(raw: &str, out: &mut Vec<char>) {
    let mut in_flag = false;
    for c in raw.trim().nfd() {
        if in_flag {
            in_flag = c != ')';
            continue;
        }
        match c {
            '(' => in_flag = true,
            '\u{200d}' | '\u{0361}' | '\u{200c}' | '\n' | '\r' => {}
            _ => out.push(c),
        }
    }
}

/// Clauses end at `.,;:!?` (a run such as `?!` counts once, its last mark) followed by
/// whitespace or the end. Returns each clause's text and its terminator (`'\0'`: none).
fn split_clauses(text: &str) -> Vec<(String, char)> {
    let chars: Vec<char> = text.chars().collect();
    let is_mark = |c: char| matches!(c, '.' | ',' | ';' | ':' | '!' | '?');
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !is_mark(c) {
            current.push(c);
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < chars.len() && is_mark(chars[j + 1]) {
            j += 1;
        }
        if j + 1 >= chars.len() || chars[j + 1].is_whitespace() {
            if current.chars().any(char::is_alphanumeric) {
                out.push((std::mem::take(&mut current), chars[j]));
            } else {
                current.clear();
            }
        } else {
            current.extend(&chars[i..=j]);
        }
        i = j + 1;
    }
    if current.chars().any(char::is_alphanumeric) {
        out.push((current, '\0'));
    }
    out
}

async fn espeak(voice: &str, input: &str) -> Result<Vec<String>, ProviderError> {
    let fail = |message: String| ProviderError::failed("espeak-ng", message);
    let mut command = tokio::process::Command::new("espeak-ng");
    command.args(["-q", "--ipa", "-v", voice]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    let output = run_with_input(&mut command, input.as_bytes().to_vec(), DEADLINE).await.map_err(|error| match error {
        ChildError::Spawn(e) => fail(format!("cannot run espeak-ng ({e}); install it with scripts/assets")),
        ChildError::NoStdin => fail("no stdin".into()),
        ChildError::Deadline => fail(format!("no answer in {DEADLINE:?}")),
        ChildError::Wait(e) => fail(e.to_string()),
    })?;
    if !output.status.success() {
        return Err(fail(format!("exited with {}", output.status)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_keep_their_terminators_and_numbers_stay_whole() {
        let clauses = split_clauses("Hi, it costs 3.50. Really?! ok");
        assert_eq!(clauses, [("Hi".into(), ','), (" it costs 3.50".into(), '.'), (" Really".into(), '!'), (" ok".into(), '\0')]);
    }

    #[test]
    fn markup_and_control_characters_never_reach_espeak() {
        assert_eq!(normalize("[[h@'loU]]\u{7}x"), "  h@'loU   x");
    }

    #[test]
    fn language_flags_and_ties_are_dropped() {
        let mut out = Vec::new();
        clean_clause("(en)hə\u{200d}loʊ(fr)", &mut out);
        assert_eq!(out.iter().collect::<String>(), "həloʊ");
    }
}
