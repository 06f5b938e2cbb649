//! The packed layout of a run of MEG-08 uses (migration 12): per use, the
//! message index (4 bytes), the timestamp's bits (8) and the event ID's
//! length (4), big-endian, then the event ID's bytes. Migration 12 builds
//! the same bytes in SQL from the rows it replaces.

use newt_crypto::store::{IndexUse, StoreError};

/// Bytes before each event ID.
const HEAD: usize = 4 + 8 + 4;

/// Packs uses sorted by index, one per index.
pub(crate) fn pack(uses: &[(u32, &IndexUse)]) -> Result<Vec<u8>, StoreError> {
    let size = uses.iter().map(|(_, u)| HEAD + u.event_id.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (index, used) in uses {
        let len = u32::try_from(used.event_id.len())
            .map_err(|_| StoreError::Backend("event ID too long to record".into()))?;
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&used.origin_server_ts.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(used.event_id.as_bytes());
    }
    Ok(out)
}

/// Calls `found` with each use of a run whose index `wanted` accepts.
pub(crate) fn unpack(
    mut bytes: &[u8],
    wanted: impl Fn(u32) -> bool,
    mut found: impl FnMut(u32, IndexUse),
) -> Result<(), StoreError> {
    let corrupt = || StoreError::Corrupt("a MEG-08 run is cut short".into());
    while !bytes.is_empty() {
        let (head, rest) = bytes.split_at_checked(HEAD).ok_or_else(corrupt)?;
        let (index, head) = head.split_at(4);
        let (ts, len) = head.split_at(8);
        let index = u32::from_be_bytes(index.try_into().map_err(|_| corrupt())?);
        let len = u32::from_be_bytes(len.try_into().map_err(|_| corrupt())?);
        let len = usize::try_from(len).map_err(|_| corrupt())?;
        let (event_id, rest) = rest.split_at_checked(len).ok_or_else(corrupt)?;
        if wanted(index) {
            let event_id = std::str::from_utf8(event_id)
                .map_err(|_| StoreError::Corrupt("a MEG-08 event ID is not UTF-8".into()))?;
            found(
                index,
                IndexUse {
                    event_id: event_id.to_owned(),
                    origin_server_ts: u64::from_be_bytes(ts.try_into().map_err(|_| corrupt())?),
                },
            );
        }
        bytes = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(event_id: &str, origin_server_ts: u64) -> IndexUse {
        IndexUse {
            event_id: event_id.into(),
            origin_server_ts,
        }
    }

    fn all(bytes: &[u8]) -> Result<Vec<(u32, IndexUse)>, StoreError> {
        let mut out = Vec::new();
        unpack(bytes, |_| true, |i, u| out.push((i, u)))?;
        Ok(out)
    }

    #[test]
    fn runs_round_trip_and_filter() {
        let uses = [
            (0, used("$a", 0)),
            (7, used("", u64::MAX)),
            (u32::MAX, used("$ü:example.org", 1_700_000_000_000)),
        ];
        let refs: Vec<(u32, &IndexUse)> = uses.iter().map(|(i, u)| (*i, u)).collect();
        let bytes = pack(&refs).unwrap();
        assert_eq!(all(&bytes).unwrap(), uses.to_vec());
        let mut some = Vec::new();
        unpack(&bytes, |i| i == 7, |i, u| some.push((i, u))).unwrap();
        assert_eq!(some, vec![(7, used("", u64::MAX))]);
        assert_eq!(all(&[]).unwrap(), Vec::new());
    }

    /// A cut or garbled run is a typed error, never a panic.
    #[test]
    fn damaged_runs_are_errors() {
        let bytes = pack(&[(1, &used("$event", 5))]).unwrap();
        for cut in 1..bytes.len() {
            assert!(all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[HEAD] = 0xff;
        assert!(matches!(all(&bad), Err(StoreError::Corrupt(_))));
        let mut long = bytes;
        long[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(all(&long).is_err());
    }
}
