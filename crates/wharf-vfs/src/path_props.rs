//! Property tests of `VirtualPath` (issue 22: adversarial tests that stay): whatever a client
//! sends, a resolved path names something inside the home directory, holds no segment that
//! could climb out or hide, and resolves to itself again. Run with the crate's tests; failures
//! are kept in `proptest-regressions/` and replayed first.

use proptest::prelude::*;

use super::*;

/// Inputs a hostile client would try: separators, dots, backslashes, percent escapes,
/// control characters, reserved names in any case, long names, and any other character.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("\\".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("\0".to_owned()),
        Just(".wharf-dir".to_owned()),
        Just(".WHARF-Uploads".to_owned()),
        "[a-zA-Z0-9 ._-]{1,12}",
        "\\PC{1,4}",
        any::<char>().prop_map(String::from),
        Just("x".repeat(300)),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn cwd() -> impl Strategy<Value = VirtualPath> {
    proptest::collection::vec("[a-z0-9]{1,8}", 0..4).prop_map(|names| {
        let mut path = VirtualPath::root();
        for name in names {
            path = path.join(&name).expect("a plain name joins");
        }
        path
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_resolved_path_stays_inside_the_home(cwd in cwd(), input in hostile_path()) {
        if let Ok(path) = VirtualPath::resolve(&cwd, &input) {
            for segment in path.segments() {
                prop_assert!(!segment.is_empty());
                prop_assert!(segment != "." && segment != "..");
                prop_assert!(!segment.contains('/') && !segment.contains('\\'));
                prop_assert!(!segment.chars().any(char::is_control));
                prop_assert!(!wharf_core::is_reserved_name(segment));
                prop_assert!(segment.len() <= MAX_NAME_BYTES);
            }
            prop_assert!(path.byte_len() <= MAX_PATH_BYTES);
            // Its own text resolves to it again, from anywhere.
            let again = VirtualPath::resolve(&cwd, &path.to_string()).ok();
            prop_assert_eq!(again, Some(path.clone()));
            let parsed = VirtualPath::parse(&path.to_string()).ok();
            prop_assert_eq!(parsed, Some(path.clone()));
        }
    }

    #[test]
    fn an_absolute_path_ignores_the_working_directory(cwd in cwd(), input in hostile_path()) {
        let absolute = format!("/{input}");
        let from_cwd = VirtualPath::resolve(&cwd, &absolute);
        let from_root = VirtualPath::parse(&absolute);
        prop_assert_eq!(from_cwd.is_ok(), from_root.is_ok());
        if let (Ok(a), Ok(b)) = (from_cwd, from_root) {
            prop_assert_eq!(a, b);
        }
    }
}
