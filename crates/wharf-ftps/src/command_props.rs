//! Property tests of the FTP command parser and the PROXY header parsers (issue 22:
//! adversarial tests that stay): any bytes give a command or an error, never a panic, and what
//! is parsed is what was sent.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn any_line_is_a_command_or_an_error(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(command) = parse(&line) {
            prop_assert!((3..=4).contains(&command.name.len()) || LONG_VERBS.contains(&command.name.as_str()));
            prop_assert!(command.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            let _ = command.loggable();
            let _ = list_path(&command.arg);
        }
    }

    #[test]
    fn a_verb_and_its_argument_come_back_as_sent(
        verb in "[a-zA-Z]{3,4}",
        arg in "[^\r\n\u{ff}]{0,200}",
    ) {
        let line = format!("{verb} {arg}");
        let command = parse(line.as_bytes()).expect("a well-formed line parses");
        prop_assert_eq!(command.name, verb.to_ascii_uppercase());
        prop_assert_eq!(command.arg, arg);
    }
}
