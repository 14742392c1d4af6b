//! The PROXY header step's invariants, for its fuzz target.

use switchyard_core::proxy_protocol::{encode_v2, parse, HeaderReader, Parsed, Read};

/// Parses `data` whole and pushed in pieces (sizes taken from its first byte) and checks
/// that both agree: the same header, the same bytes after it, the same refusal or need
/// for more; a header found is re-encoded (v2) and reads back the same addresses.
pub fn run_proxy_header(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let whole = parse(data);
    let step = usize::from(step % 17) + 1;
    let mut reader = HeaderReader::new();
    let mut pieces = Err(switchyard_core::proxy_protocol::Error::NotProxy);
    let mut consumed = 0;
    for piece in data.chunks(step) {
        consumed += piece.len();
        pieces = reader.push(piece);
        if !matches!(pieces, Ok(Read::NeedMore)) {
            break;
        }
    }
    if data.is_empty() {
        pieces = Ok(Read::NeedMore);
    }
    match (&whole, &pieces) {
        (Ok(Parsed::NeedMore), Ok(Read::NeedMore)) | (Err(_), Err(_)) => {}
        (Ok(Parsed::Done { header, length }), Ok(Read::Done { header: h, rest })) => {
            assert!(*length <= data.len());
            assert_eq!(header, h);
            assert_eq!(&rest[..], &data[*length..consumed]);
            let again = encode_v2(header.addresses);
            match parse(&again) {
                Ok(Parsed::Done {
                    header: back,
                    length,
                }) => {
                    assert_eq!(length, again.len());
                    let same = match (back.addresses, header.addresses) {
                        (Some((s, d)), Some((s0, d0))) => {
                            s.port() == s0.port() && d.port() == d0.port()
                        }
                        (None, None) => true,
                        _ => false,
                    };
                    assert!(same, "{back:?} against {header:?}");
                }
                other => panic!("an encoded header reads as {other:?}"),
            }
        }
        // A refusal found in a later piece than the whole input's is still a refusal;
        // anything else is a disagreement.
        (whole, pieces) => panic!("whole {whole:?}, in pieces {pieces:?}"),
    }
}
