//! Property tests of the SFTP packet decoding (issue 22: adversarial tests that stay): any
//! packet body gives a request or an error, never a panic, and the fast WRITE path agrees
//! with the generic decoder on every packet.

use proptest::prelude::*;

use super::*;

/// Packet bodies a hostile client would send: a real type byte most of the time, then
/// lengths that lie and any bytes.
fn packet_body() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![1u8..=20, 101u8..=105, 200u8..=201, any::<u8>()];
    let length = prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(4u32),
        0u32..64,
        Just(u32::MAX),
        any::<u32>()
    ];
    let field = prop_oneof![
        length.prop_map(|n| n.to_be_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    (kind, proptest::collection::vec(field, 0..10)).prop_map(|(kind, fields)| {
        let mut body = vec![kind];
        for field in fields {
            body.extend(field);
        }
        body
    })
}

/// WRITE packets, well formed or not: lengths that are true or lie, handles that are UTF-8
/// or not, fields cut short, bytes after the end.
fn write_like() -> impl Strategy<Value = Vec<u8>> {
    let lie = prop_oneof![
        Just(None),
        any::<u32>().prop_map(Some),
        (0u32..8).prop_map(Some)
    ];
    (
        proptest::collection::vec(any::<u8>(), 0..12),
        lie.clone(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        lie,
        proptest::collection::vec(any::<u8>(), 0..3),
        0usize..4,
    )
        .prop_map(
            |(handle, handle_len, offset, data, data_len, trailing, cut)| {
                let mut raw = vec![SSH_FXP_WRITE];
                raw.extend(7u32.to_be_bytes());
                raw.extend(handle_len.unwrap_or(handle.len() as u32).to_be_bytes());
                raw.extend(&handle);
                raw.extend(offset.to_be_bytes());
                raw.extend(data_len.unwrap_or(data.len() as u32).to_be_bytes());
                raw.extend(&data);
                raw.extend(&trailing);
                raw.truncate(raw.len().saturating_sub(cut));
                raw
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn any_packet_is_a_request_or_an_error(body in packet_body()) {
        let _ = Packet::try_from(&mut Bytes::from(body.clone()));
        // check-file's own parser takes the rest of an extended request.
        let _ = extended::CheckFile::parse(Bytes::from(body));
    }

    #[test]
    fn the_fast_write_path_agrees_with_the_generic_decoder(
        body in prop_oneof![write_like(), packet_body()],
    ) {
        let raw = Bytes::from(body);
        if let Some((handle, offset, data)) = parse_write(&raw) {
            let Ok(Packet::Write(generic)) = Packet::try_from(&mut raw.clone()) else {
                return Err(TestCaseError::fail("the generic decoder refused a write we took"));
            };
            prop_assert_eq!((generic.handle, generic.offset), (handle, offset));
            prop_assert_eq!(&generic.data[..], &data[..]);
        }
    }

    #[test]
    fn a_well_formed_write_takes_the_fast_path(
        handle in "[0-9]{1,10}",
        offset in any::<u64>(),
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut raw = vec![SSH_FXP_WRITE];
        raw.extend(7u32.to_be_bytes());
        raw.extend((handle.len() as u32).to_be_bytes());
        raw.extend(handle.as_bytes());
        raw.extend(offset.to_be_bytes());
        raw.extend((data.len() as u32).to_be_bytes());
        raw.extend(&data);
        let parsed = parse_write(&Bytes::from(raw));
        prop_assert_eq!(parsed, Some((handle, offset, Bytes::from(data))));
    }
}
