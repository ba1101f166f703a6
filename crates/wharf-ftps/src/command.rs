//! Parsing one command line of the control connection into a [`Command`].

/// Longest command line accepted, CRLF excluded: a path of [`wharf_vfs::MAX_PATH_BYTES`] plus
/// the verb, with room to spare. A longer line ends the connection.
pub(crate) const MAX_LINE: usize = wharf_vfs::MAX_PATH_BYTES + 512;

/// The commands the gateway knows (RFC 959, 2228, 2389, 2428, 3659, 4217, and the HASH, RANG
/// and MFMT drafts). The `X…` aliases of RFC 775 map to their modern names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    User,
    Pass,
    Acct,
    Auth,
    Pbsz,
    Prot,
    Ccc,
    Type,
    Mode,
    Stru,
    Syst,
    Feat,
    Opts,
    Noop,
    Quit,
    Rein,
    Pwd,
    Cwd,
    Cdup,
    List,
    Nlst,
    Mlsd,
    Mlst,
    Size,
    Mdtm,
    /// Set a modification time (draft-somers-ftp-mfxx); accepted as a no-op.
    Mfmt,
    /// A file's digest with the session's algorithm (draft-bryan-ftpext-hash).
    Hash,
    /// The byte range of the next HASH (draft-bryan-ftp-range).
    Rang,
    /// `XSHA256`, `XSHA512`, `XSHA1`, `XMD5`: the common non-standard digest commands.
    XHash(XHash),
    Stor,
    Stou,
    Retr,
    Appe,
    Rest,
    Dele,
    Mkd,
    Rmd,
    Rnfr,
    Rnto,
    Pasv,
    Epsv,
    Port,
    Eprt,
    Abor,
    Stat,
    Help,
    Allo,
    Site,
    Clnt,
    /// Anything else; the reply names it.
    Unknown,
}

/// The algorithm of an `X…` digest command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XHash {
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

/// Verbs longer than four letters or with digits, which RFC 959 syntax does not allow but
/// clients send anyway.
const LONG_VERBS: [&str; 4] = ["XSHA256", "XSHA512", "XSHA1", "XMD5"];

impl Verb {
    fn from_name(name: &str) -> Verb {
        match name {
            "USER" => Verb::User,
            "PASS" => Verb::Pass,
            "ACCT" => Verb::Acct,
            "AUTH" => Verb::Auth,
            "PBSZ" => Verb::Pbsz,
            "PROT" => Verb::Prot,
            "CCC" => Verb::Ccc,
            "TYPE" => Verb::Type,
            "MODE" => Verb::Mode,
            "STRU" => Verb::Stru,
            "SYST" => Verb::Syst,
            "FEAT" => Verb::Feat,
            "OPTS" => Verb::Opts,
            "NOOP" => Verb::Noop,
            "QUIT" => Verb::Quit,
            "REIN" => Verb::Rein,
            "PWD" | "XPWD" => Verb::Pwd,
            "CWD" | "XCWD" => Verb::Cwd,
            "CDUP" | "XCUP" => Verb::Cdup,
            "LIST" => Verb::List,
            "NLST" => Verb::Nlst,
            "MLSD" => Verb::Mlsd,
            "MLST" => Verb::Mlst,
            "SIZE" => Verb::Size,
            "MDTM" => Verb::Mdtm,
            "MFMT" => Verb::Mfmt,
            "HASH" => Verb::Hash,
            "RANG" => Verb::Rang,
            "XSHA256" => Verb::XHash(XHash::Sha256),
            "XSHA512" => Verb::XHash(XHash::Sha512),
            "XSHA1" => Verb::XHash(XHash::Sha1),
            "XMD5" => Verb::XHash(XHash::Md5),
            "STOR" => Verb::Stor,
            "STOU" => Verb::Stou,
            "RETR" => Verb::Retr,
            "APPE" => Verb::Appe,
            "REST" => Verb::Rest,
            "DELE" => Verb::Dele,
            "MKD" | "XMKD" => Verb::Mkd,
            "RMD" | "XRMD" => Verb::Rmd,
            "RNFR" => Verb::Rnfr,
            "RNTO" => Verb::Rnto,
            "PASV" => Verb::Pasv,
            "EPSV" => Verb::Epsv,
            "PORT" => Verb::Port,
            "EPRT" => Verb::Eprt,
            "ABOR" => Verb::Abor,
            "STAT" => Verb::Stat,
            "HELP" => Verb::Help,
            "ALLO" => Verb::Allo,
            "SITE" => Verb::Site,
            "CLNT" => Verb::Clnt,
            _ => Verb::Unknown,
        }
    }

    /// Commands that open a data connection.
    pub(crate) fn uses_data_connection(self) -> bool {
        matches!(
            self,
            Verb::List
                | Verb::Nlst
                | Verb::Mlsd
                | Verb::Retr
                | Verb::Stor
                | Verb::Stou
                | Verb::Appe
        )
    }

    /// Commands answered before login (everything else is `530`).
    pub(crate) fn allowed_before_login(self) -> bool {
        matches!(
            self,
            Verb::User
                | Verb::Pass
                | Verb::Acct
                | Verb::Auth
                | Verb::Pbsz
                | Verb::Prot
                | Verb::Ccc
                | Verb::Syst
                | Verb::Feat
                | Verb::Opts
                | Verb::Noop
                | Verb::Quit
                | Verb::Rein
                | Verb::Help
                | Verb::Clnt
                | Verb::Type
                | Verb::Abor
                | Verb::Port
                | Verb::Eprt
        )
    }
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub verb: Verb,
    /// The verb as sent, upper-cased (for replies about unknown commands and for logs).
    pub name: String,
    /// Everything after the first space, as sent (paths may contain and end with spaces).
    pub arg: String,
}

impl Command {
    /// The command for logs: the password of `PASS` is never shown.
    pub(crate) fn loggable(&self) -> String {
        match self.verb {
            Verb::Pass => "PASS ****".to_owned(),
            _ if self.arg.is_empty() => self.name.clone(),
            _ => format!("{} {}", self.name, self.arg),
        }
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("empty command line")]
    Empty,
    #[error("syntax error: a command is 3 or 4 letters")]
    BadVerb,
    #[error("the command line is not valid UTF-8")]
    NotUtf8,
}

/// Parses one line (without its CRLF or LF).
pub(crate) fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // Telnet IAC sequences (some clients send IAC IP IAC DM before ABOR) carry no meaning here.
    let line: Vec<u8> = strip_telnet(line);
    let line = std::str::from_utf8(&line).map_err(|_| ParseError::NotUtf8)?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (name, arg) = match line.split_once(' ') {
        Some((name, arg)) => (name, arg),
        None => (line, ""),
    };
    let name = name.to_ascii_uppercase();
    let rfc959 = (3..=4).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphabetic());
    if !rfc959 && !LONG_VERBS.contains(&name.as_str()) {
        return Err(ParseError::BadVerb);
    }
    Ok(Command {
        verb: Verb::from_name(&name),
        name,
        arg: arg.to_owned(),
    })
}

/// `line` without Telnet IAC sequences (0xFF and the byte after it; 0xFF 0xFF is a literal
/// 0xFF, which is not UTF-8 on its own anyway).
fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied();
    while let Some(b) = bytes.next() {
        if b == 0xFF {
            bytes.next();
        } else {
            out.push(b);
        }
    }
    out
}

/// The path argument of LIST and NLST without the `ls` options some clients send
/// (`LIST -la`, `LIST -a dir`).
pub(crate) fn list_path(arg: &str) -> &str {
    let mut rest = arg.trim_start();
    while rest.starts_with('-') {
        match rest.split_once(' ') {
            Some((_, after)) => rest = after.trim_start(),
            None => return "",
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Command {
        parse(line.as_bytes()).unwrap()
    }

    #[test]
    fn verbs_and_arguments() {
        let c = cmd("stor my file.txt ");
        assert_eq!(c.verb, Verb::Stor);
        assert_eq!(c.name, "STOR");
        assert_eq!(c.arg, "my file.txt ", "spaces in paths are kept");
        assert_eq!(cmd("PWD").verb, Verb::Pwd);
        assert_eq!(cmd("XPWD").verb, Verb::Pwd);
        assert_eq!(cmd("xcup").verb, Verb::Cdup);
        assert_eq!(cmd("XMKD d").verb, Verb::Mkd);
        assert_eq!(cmd("AUTH TLS\r").arg, "TLS");
        assert_eq!(cmd("EPSV ALL").arg, "ALL");
        assert_eq!(cmd("HASH a b").verb, Verb::Hash);
        assert_eq!(cmd("MFMT 20260102030405 x").verb, Verb::Mfmt);
        assert_eq!(cmd("rang 0 9").verb, Verb::Rang);
        let unknown = cmd("FOO bar");
        assert_eq!(unknown.verb, Verb::Unknown);
        assert_eq!(unknown.name, "FOO");
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"   "), Err(ParseError::Empty));
        assert_eq!(parse(b"ST"), Err(ParseError::BadVerb));
        assert_eq!(parse(b"STORE x"), Err(ParseError::BadVerb));
        assert_eq!(parse(b"ST0R x"), Err(ParseError::BadVerb));
        assert_eq!(parse(b"\x16\x03\x01"), Err(ParseError::BadVerb));
        assert_eq!(parse(b"RETR \xC3\x28"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn digest_aliases_are_verbs_though_longer_than_four_letters() {
        assert_eq!(cmd("XSHA256 f").verb, Verb::XHash(XHash::Sha256));
        assert_eq!(cmd("xsha512 f").verb, Verb::XHash(XHash::Sha512));
        assert_eq!(cmd("XSHA1 f").verb, Verb::XHash(XHash::Sha1));
        let xmd5 = cmd("XMD5 my file");
        assert_eq!(
            (xmd5.verb, xmd5.name.as_str()),
            (Verb::XHash(XHash::Md5), "XMD5")
        );
        assert_eq!(xmd5.arg, "my file");
        // Other long or digit-bearing verbs are still syntax errors.
        assert_eq!(parse(b"XSHA384 f"), Err(ParseError::BadVerb));
        assert_eq!(parse(b"XCRC32 f"), Err(ParseError::BadVerb));
    }

    #[test]
    fn telnet_interrupt_before_abor() {
        let c = parse(b"\xFF\xF4\xFF\xF2ABOR").unwrap();
        assert_eq!(c.verb, Verb::Abor);
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(cmd("PASS secret").loggable(), "PASS ****");
        assert_eq!(cmd("RETR a").loggable(), "RETR a");
    }

    #[test]
    fn list_options_are_skipped() {
        assert_eq!(list_path(""), "");
        assert_eq!(list_path("-la"), "");
        assert_eq!(list_path("-l -a dir"), "dir");
        assert_eq!(list_path("dir name"), "dir name");
        assert_eq!(list_path("-a my dir"), "my dir");
    }
}

#[cfg(test)]
#[path = "command_props.rs"]
mod props;
