//! Behaviour of the few helpers the crate has: enum conversions and the
//! ring size rule.

use vm_memory::ByteValued;
use xen_abi::*;

#[test]
fn xenbus_state_parses_xenstore_text() {
    assert_eq!("4".parse::<XenbusState>().unwrap(), XenbusState::Connected);
    assert_eq!(" 6\n".parse::<XenbusState>().unwrap(), XenbusState::Closed);
    assert_eq!(XenbusState::try_from(2).unwrap(), XenbusState::InitWait);
    assert_eq!(XenbusState::InitWait.to_string(), "2");
    for s in XenbusState::ALL {
        assert_eq!(s.to_string().parse::<XenbusState>().unwrap(), s);
    }
    let err = "9".parse::<XenbusState>().unwrap_err();
    assert_eq!(err.to_string(), "invalid xenbus state: \"9\"");
    assert!("Connected".parse::<XenbusState>().is_err());
    assert!(XenbusState::try_from(u32::MAX).is_err());
}

#[test]
fn xs_message_types_round_trip() {
    for t in XsSockmsgType::ALL {
        assert_eq!(XsSockmsgType::try_from(t as u32).unwrap(), t);
    }
    assert_eq!(
        XsSockmsgType::try_from(21).unwrap(),
        XsSockmsgType::ResetWatches
    );
    // 20 (the removed XS_RESTRICT) and anything past the end are invalid.
    assert!(XsSockmsgType::try_from(20).is_err());
    assert!(XsSockmsgType::try_from(XS_TYPE_COUNT).is_err());
    assert!(XsSockmsgType::try_from(XS_INVALID).is_err());
    assert_eq!(XsSockmsgType::Directory.name(), "XS_DIRECTORY");
}

#[test]
fn ring_sizes() {
    assert_eq!(BLKIF_RING_SIZE, 32);
    assert_eq!(NETIF_TX_RING_SIZE, 256);
    assert_eq!(NETIF_RX_RING_SIZE, 256);
    assert_eq!(ring_size(64, 8), 0);
    assert_eq!(ring_size(4096, 4096), 0);
    assert_eq!(ring_size(4096, 0), 0);
    assert_eq!(ring_size(2 * 4096, BLKIF_RING_ENTRY_SIZE), 64);
    assert_eq!(ring_entry_offset(33, 32, 112), 64 + 112);
}

#[test]
fn byte_valued_round_trip() {
    let mut si = StartInfo::default();
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.console.evtchn = 2;
    si.cmd_line[..7].copy_from_slice(b"console");
    let bytes = si.as_slice().to_vec();
    assert_eq!(bytes.len(), 1168);
    assert_eq!(&bytes[72 + 8..72 + 12], &2u32.to_le_bytes());
    let mut back = StartInfo::default();
    back.as_mut_slice().copy_from_slice(&bytes);
    assert_eq!(back, si);

    let e = E820Entry {
        addr: 0x1000,
        size: 0x2000,
        type_: E820_RAM,
    };
    assert_eq!(e.as_slice().len(), 20);
    assert_eq!(&e.as_slice()[16..20], &1u32.to_le_bytes());
}
