//! Property tests of the PROXY protocol parsers (issue 22: adversarial tests that stay): any
//! bytes from a peer give a header or an error, never a panic, and never more read than one
//! header.

use proptest::prelude::*;

use super::*;

fn v2_header(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.extend([version_command, family]);
    bytes.extend((body.len() as u16).to_be_bytes());
    bytes.extend(body);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn any_v1_line_is_a_header_or_an_error(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_v1(&line);
    }

    #[test]
    fn any_v2_body_is_a_header_or_an_error(
        version_command in any::<u8>(),
        family in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = parse_v2(version_command, family, &body);
    }

    #[test]
    fn reading_a_header_never_reads_past_it(
        version_command in prop_oneof![Just(0x20u8), Just(0x21u8), any::<u8>()],
        family in prop_oneof![Just(0x11u8), Just(0x21u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..80),
        after in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let header = v2_header(version_command, family, &body);
        let mut sent = header.clone();
        sent.extend(&after);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (read, rest) = runtime.block_on(async {
            let mut stream = sent.as_slice();
            let read = read_header(&mut stream).await;
            (read, stream.to_vec())
        });
        if read.is_ok() {
            prop_assert_eq!(rest, after, "the bytes after the header are left unread");
        }
    }

    #[test]
    fn any_bytes_from_a_peer_are_a_header_or_an_error(sent in proptest::collection::vec(any::<u8>(), 0..300)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _ = runtime.block_on(async {
            let mut stream = sent.as_slice();
            read_header(&mut stream).await
        });
    }
}
