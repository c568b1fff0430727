//! Joining argv into `Executable.command`, which auraed splits like a
//! systemd `ExecStart=` line (whitespace between words, quotes group,
//! C-style backslash escapes). Quoting only what needs it keeps the command
//! readable in `aer schedule list` and in the daemon's logs.

/// `args` as one command line that splits back into exactly `args`.
pub fn join_command<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| quote_arg(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `arg` unchanged when it is a plain word, else in double quotes with `"`
/// and `\` escaped. Inside double quotes every other character, whitespace
/// and single quotes included, stands for itself.
pub fn quote_arg(arg: &str) -> String {
    let plain = !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subset of the daemon's splitter that `quote_arg` produces:
    /// whitespace, double quotes and the `\"` and `\\` escapes.
    fn split(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_none() {
                return words;
            }
            let (mut word, mut quoted) = (String::new(), false);
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.push(chars.next().expect("escape has a character")),
                    '"' => quoted = !quoted,
                    c if c.is_whitespace() && !quoted => break,
                    c => word.push(c),
                }
            }
            assert!(!quoted, "unterminated quote in {line:?}");
            words.push(word);
        }
    }

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(
            join_command(&["echo", "hello", "--flag=1", "$HOME", "a;b", "*"]),
            "echo hello --flag=1 $HOME a;b *"
        );
    }

    #[test]
    fn words_that_need_it_are_quoted() {
        assert_eq!(join_command(&["echo", "a b"]), r#"echo "a b""#);
        assert_eq!(join_command(&["echo", ""]), r#"echo """#);
        assert_eq!(
            join_command(&["echo", r#"say "hi""#]),
            r#"echo "say \"hi\"""#
        );
        assert_eq!(join_command(&["echo", r"C:\dir"]), r#"echo "C:\\dir""#);
        assert_eq!(
            join_command(&["sh", "-c", "echo 'x'; exit 3"]),
            r#"sh -c "echo 'x'; exit 3""#
        );
        assert_eq!(join_command(&["printf", "a\tb\n"]), "printf \"a\tb\n\"");
    }

    #[test]
    fn round_trips() {
        let cases: &[&[&str]] = &[
            &["echo", "a b"],
            &["echo", "", "x", ""],
            &["sh", "-c", r#"echo "a  b" | tr a b; echo 'c'"#],
            &[
                "printf",
                r"%s\n",
                r"back\slash",
                r#"\""#,
                "tab\there",
                "new\nline",
            ],
            &["echo", "ünïcødé", "日本"],
        ];
        for args in cases {
            assert_eq!(split(&join_command(args)), *args, "{args:?}");
        }
    }
}
