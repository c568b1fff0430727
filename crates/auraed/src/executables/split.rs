//! Splitting `Executable.command` into words like a systemd `ExecStart=` line:
//! whitespace separates words, single and double quotes group them (also in
//! the middle of a word), and C-style backslash escapes are decoded. There is
//! no shell: no globbing, pipes, redirection or `$VAR` expansion.
//!
//! As in systemd, `\xNN` and `\NNN` give a raw byte (so `\xff` passes the
//! byte 0xff, not the UTF-8 of U+00FF), and `\u`/`\U` a Unicode character:
//! the words are `OsString`s, which carry any byte but NUL.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("command has an unterminated {0} quote")]
    UnterminatedQuote(char),
    #[error("command ends with a lone backslash")]
    TrailingBackslash,
    #[error("command has an unknown escape \"\\{0}\"")]
    UnknownEscape(char),
    #[error("command has an invalid escape \"{0}\"")]
    BadEscape(String),
    #[error("command contains a NUL character")]
    Nul,
}

/// Longest accepted command line.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// Why a command line cannot be run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command is {len} bytes long: at most {MAX_COMMAND_LEN} are allowed")]
    TooLong { len: usize },
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("command is empty: give a program and its arguments, e.g. \"echo hi\" (use \"sh -c '...'\" for a shell)")]
    Empty,
}

/// The program and arguments of a command line as every API takes it
/// (RunExecutable, the schedule, exec in a container): at most
/// [`MAX_COMMAND_LEN`] bytes, split by [`split_command`], at least one word.
pub fn parse_command(command: &str) -> Result<Vec<OsString>, CommandError> {
    if command.len() > MAX_COMMAND_LEN {
        return Err(CommandError::TooLong { len: command.len() });
    }
    let argv = split_command(command)?;
    if argv.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(argv)
}

/// The words of `command`; an empty or blank command gives no words.
pub fn split_command(command: &str) -> Result<Vec<OsString>, SplitError> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = Word::default();
        let mut quote: Option<char> = None;
        loop {
            let Some(c) = chars.next() else {
                if let Some(q) = quote {
                    return Err(SplitError::UnterminatedQuote(q));
                }
                break;
            };
            match (c, quote) {
                ('\0', _) => return Err(SplitError::Nul),
                ('\\', _) => unescape(&mut chars, &mut word)?,
                (q, Some(open)) if q == open => quote = None,
                (c, Some(_)) => word.push(c),
                ('"' | '\'', None) => quote = Some(c),
                (c, None) if c.is_whitespace() => break,
                (c, None) => word.push(c),
            }
        }
        words.push(OsString::from_vec(word.0));
    }
}

/// The bytes of one word.
#[derive(Default)]
struct Word(Vec<u8>);

impl Word {
    fn push(&mut self, c: char) {
        self.0
            .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
}

fn unescape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut Word,
) -> Result<(), SplitError> {
    let c = chars.next().ok_or(SplitError::TrailingBackslash)?;
    let ch = match c {
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        's' => ' ',
        '\\' | '"' | '\'' | ' ' => c,
        'x' => return byte(word, hex(chars, 2, "\\x")?),
        'u' => char_of(hex(chars, 4, "\\u")?)?,
        'U' => char_of(hex(chars, 8, "\\U")?)?,
        '0'..='7' => {
            let mut digits = String::from(c);
            for _ in 0..2 {
                match chars.next() {
                    Some(d @ '0'..='7') => digits.push(d),
                    _ => return Err(SplitError::BadEscape(format!("\\{digits}"))),
                }
            }
            let v = u32::from_str_radix(&digits, 8)
                .map_err(|_| SplitError::BadEscape(format!("\\{digits}")))?;
            return byte(word, (v, format!("\\{digits}")));
        }
        other => return Err(SplitError::UnknownEscape(other)),
    };
    word.push(ch);
    Ok(())
}

/// A raw byte from `\xNN` or `\NNN`: never NUL, which no argument can hold.
fn byte(word: &mut Word, (v, text): (u32, String)) -> Result<(), SplitError> {
    match u8::try_from(v) {
        Ok(b) if b != 0 => {
            word.0.push(b);
            Ok(())
        }
        _ => Err(SplitError::BadEscape(text)),
    }
}

fn char_of((v, text): (u32, String)) -> Result<char, SplitError> {
    char::from_u32(v)
        .filter(|c| *c != '\0')
        .ok_or(SplitError::BadEscape(text))
}

/// The value of `n` hex digits, and the escape as written (for errors).
fn hex(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    n: usize,
    prefix: &str,
) -> Result<(u32, String), SplitError> {
    let digits: String = (0..n)
        .filter_map(|_| chars.next_if(|c| c.is_ascii_hexdigit()))
        .collect();
    let text = format!("{prefix}{digits}");
    match u32::from_str_radix(&digits, 16) {
        Ok(v) if digits.len() == n => Ok((v, text)),
        _ => Err(SplitError::BadEscape(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        split_command(s).expect("splits")
    }

    #[test]
    fn plain_words_and_whitespace() {
        assert_eq!(words("  echo   hi\tthere \n"), ["echo", "hi", "there"]);
        assert!(words("").is_empty());
        assert!(words("   ").is_empty());
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(
            words(r#"sh -c 'echo "a  b"; exit 3'"#),
            ["sh", "-c", r#"echo "a  b"; exit 3"#]
        );
        assert_eq!(words(r#"echo "it's""#), ["echo", "it's"]);
        assert_eq!(words(r#"echo a"b c"d"#), ["echo", "ab cd"]);
        assert_eq!(words(r#"echo "" x"#), ["echo", "", "x"]);
    }

    #[test]
    fn escapes() {
        assert_eq!(words(r#"printf a\tb\nc"#), ["printf", "a\tb\nc"]);
        assert_eq!(
            words(r#"echo a\ b \"q\" \\"#),
            ["echo", "a b", "\"q\"", "\\"]
        );
        assert_eq!(words(r#"echo \x41\101\u00e9\s"#), ["echo", "AAé "]);
        assert_eq!(words(r#"echo "x\"y""#), ["echo", "x\"y"]);
    }

    #[test]
    fn byte_escapes_give_raw_bytes_as_systemd_does() {
        let raw = |b: &[u8]| OsString::from_vec(b.to_vec());
        assert_eq!(words(r"printf \xff"), [raw(b"printf"), raw(&[0xff])]);
        assert_eq!(words(r"printf a\377b"), [raw(b"printf"), raw(b"a\xffb")]);
        assert_eq!(words(r"x \xc3\xa9"), [raw(b"x"), raw("é".as_bytes())]);
        // \u and \U are characters, written as UTF-8.
        assert_eq!(words(r"x \u00ff"), [raw(b"x"), raw("\u{ff}".as_bytes())]);
        assert_eq!(
            split_command(r"x \400"),
            Err(SplitError::BadEscape("\\400".into()))
        );
        assert_eq!(
            split_command(r"x \000"),
            Err(SplitError::BadEscape("\\000".into()))
        );
    }

    #[test]
    fn parse_command_wants_a_bounded_non_empty_command() {
        assert_eq!(
            parse_command(" echo  hi "),
            Ok(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(parse_command("  "), Err(CommandError::Empty));
        let long = "x".repeat(MAX_COMMAND_LEN + 1);
        assert_eq!(
            parse_command(&long),
            Err(CommandError::TooLong {
                len: MAX_COMMAND_LEN + 1
            })
        );
        assert_eq!(
            parse_command("echo 'a"),
            Err(CommandError::Split(SplitError::UnterminatedQuote('\'')))
        );
    }

    #[test]
    fn shell_syntax_is_literal() {
        assert_eq!(
            words("echo $HOME | cat > f; *"),
            ["echo", "$HOME", "|", "cat", ">", "f;", "*"]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            split_command("echo 'abc"),
            Err(SplitError::UnterminatedQuote('\''))
        );
        assert_eq!(
            split_command("echo \"abc"),
            Err(SplitError::UnterminatedQuote('"'))
        );
        assert_eq!(
            split_command("echo abc\\"),
            Err(SplitError::TrailingBackslash)
        );
        assert_eq!(
            split_command("echo \\q"),
            Err(SplitError::UnknownEscape('q'))
        );
        assert_eq!(
            split_command("echo \\xZZ"),
            Err(SplitError::BadEscape("\\x".into()))
        );
        assert_eq!(
            split_command("echo \\x00"),
            Err(SplitError::BadEscape("\\x00".into()))
        );
        assert_eq!(split_command("echo a\0b"), Err(SplitError::Nul));
    }
}

/// Property tests (proptest): arbitrary input never panics, and any list of
/// words quoted the documented way splits back into the same words.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn os(words: Vec<String>) -> Vec<std::ffi::OsString> {
        words.into_iter().map(Into::into).collect()
    }

    fn quote(word: &str) -> String {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }

    proptest! {
        #[test]
        fn any_input_splits_or_fails_cleanly(s in any::<String>()) {
            if let Ok(words) = split_command(&s) {
                prop_assert!(words.iter().all(|w| !w.as_encoded_bytes().contains(&0)));
                prop_assert!(words.len() <= s.len());
            }
        }

        #[test]
        fn quoted_words_round_trip(words in proptest::collection::vec("[^\0]{0,12}", 0..8)) {
            let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
            prop_assert_eq!(split_command(&line), Ok(os(words)));
        }

        #[test]
        fn plain_words_split_on_whitespace(words in proptest::collection::vec("[a-zA-Z0-9_./=:-]{1,10}", 0..8), sep in "[ \t\n]{1,3}") {
            let line = words.join(&sep);
            prop_assert_eq!(split_command(&line), Ok(os(words)));
        }
    }
}
