//! [`Reply`]: an FTP reply, single- or multi-line, formatted as RFC 959 §4.2 says.

use std::fmt;

/// One reply: a three-digit code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// A reply whose text is `text`; a text with line breaks becomes a multi-line reply.
    pub(crate) fn new(code: u16, text: impl AsRef<str>) -> Self {
        let lines: Vec<String> = text.as_ref().lines().map(clean).collect();
        Reply {
            code,
            lines: if lines.is_empty() {
                vec![String::new()]
            } else {
                lines
            },
        }
    }

    /// A multi-line reply: `first`, the `middle` lines (each sent with a leading space, as
    /// FEAT and MLST want them), then `last`.
    pub(crate) fn multi(
        code: u16,
        first: impl AsRef<str>,
        middle: impl IntoIterator<Item = String>,
        last: impl AsRef<str>,
    ) -> Self {
        let mut lines = vec![clean(first.as_ref())];
        lines.extend(middle.into_iter().map(|line| {
            let line = clean(&line);
            if line.starts_with(' ') {
                line
            } else {
                format!(" {line}")
            }
        }));
        lines.push(clean(last.as_ref()));
        Reply { code, lines }
    }

    pub(crate) fn code(&self) -> u16 {
        self.code
    }

    /// The bytes sent on the control connection.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

/// The first line of a multi-line reply sent piece by piece (`STAT <path>` streams a whole
/// directory): `213-text\r\n`. The reply is ended by an ordinary [`Reply`] with the same code.
pub(crate) fn first_line(code: u16, text: &str) -> String {
    format!("{code}-{}\r\n", clean(text))
}

/// A middle line of a multi-line reply sent piece by piece, CRLF included (see [`Reply`]'s
/// `Display` for the rules).
pub(crate) fn middle_line(line: &str) -> String {
    let line = clean(line);
    if looks_like_an_end(&line) {
        format!(" {line}\r\n")
    } else {
        format!("{line}\r\n")
    }
}

/// A line starting with three digits: a client could take it for the last line of a reply.
fn looks_like_an_end(line: &str) -> bool {
    line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
}

/// Single line: `250 text\r\n`. Several: `211-first\r\n`, the middle lines as they are (a line
/// that starts with three digits gets a space in front, so no client takes it for the end),
/// then `211 last\r\n`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            if i == last {
                write!(f, "{} {line}\r\n", self.code)?;
            } else if i == 0 {
                write!(f, "{}-{line}\r\n", self.code)?;
            } else if looks_like_an_end(line) {
                write!(f, " {line}\r\n")?;
            } else {
                write!(f, "{line}\r\n")?;
            }
        }
        Ok(())
    }
}

/// A line without CR, LF or other control characters (they would end the reply early or forge
/// one).
fn clean(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(
            Reply::new(230, "Logged in.").to_string(),
            "230 Logged in.\r\n"
        );
        assert_eq!(Reply::new(200, "").to_string(), "200 \r\n");
        assert_eq!(Reply::new(550, "a\tb").to_string(), "550 a b\r\n");
    }

    #[test]
    fn multi_line() {
        let feat = Reply::multi(
            211,
            "Extensions supported:",
            ["SIZE".to_owned(), " MDTM".to_owned()],
            "End",
        );
        assert_eq!(
            feat.to_string(),
            "211-Extensions supported:\r\n SIZE\r\n MDTM\r\n211 End\r\n"
        );
        assert_eq!(
            Reply::new(214, "one\r\ntwo\nthree").to_string(),
            "214-one\r\ntwo\r\n214 three\r\n"
        );
        // A middle line that looks like the end of the reply is shifted.
        assert_eq!(
            Reply::new(211, "a\n226 fake\nb").to_string(),
            "211-a\r\n 226 fake\r\n211 b\r\n"
        );
    }

    #[test]
    fn streamed_lines_follow_the_same_rules() {
        let streamed = format!(
            "{}{}{}{}",
            first_line(213, "Status of /a:"),
            middle_line("-rw-r--r-- 1 ftp ftp 5 Jan  1  2026 a"),
            middle_line("213 fake\r\n230 x"),
            Reply::new(213, "End of status")
        );
        assert_eq!(
            streamed,
            "213-Status of /a:\r\n-rw-r--r-- 1 ftp ftp 5 Jan  1  2026 a\r\n 213 fake  230 x\r\n\
             213 End of status\r\n"
        );
    }

    #[test]
    fn no_injected_lines() {
        let reply = Reply::new(550, "name\r\n230 Logged in");
        assert_eq!(reply.to_string(), "550-name\r\n550 230 Logged in\r\n");
        let reply = Reply::multi(250, "x\ry", ["a\nb".to_owned()], "End");
        assert_eq!(reply.to_string(), "250-x y\r\n a b\r\n250 End\r\n");
    }
}
