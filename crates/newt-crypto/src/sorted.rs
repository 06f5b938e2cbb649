//! Looking up many keys in a map at once. A room's members come sorted,
//! and before every message each is looked up in the machine's caches:
//! walking beside the map compares each key about twice, where a lookup
//! each compares it about log2(n) times (user IDs share long prefixes,
//! so each comparison is a string compare).

use std::collections::BTreeMap;

/// For each of `keys`, its value in `map`, in the order of `keys`.
pub(crate) fn lookup_all<'m, K: Ord, V>(map: &'m BTreeMap<K, V>, keys: &[K]) -> Vec<Option<&'m V>> {
    // A walk visits every entry between the first and last key: only
    // when the map is not much larger than the list.
    let walk = keys.is_sorted() && map.len() <= keys.len().saturating_mul(4);
    if !walk {
        return keys.iter().map(|k| map.get(k)).collect();
    }
    let mut entries = match keys.first() {
        Some(first) => map.range(first..).peekable(),
        None => return Vec::new(),
    };
    keys.iter()
        .map(|key| {
            while entries.next_if(|(k, _)| *k < key).is_some() {}
            entries.peek().filter(|(k, _)| *k == key).map(|(_, v)| *v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walked or looked up, every key finds exactly its own entry,
    /// repeated and missing keys included.
    #[test]
    fn every_key_finds_its_entry_either_way() {
        let map: BTreeMap<u32, u32> = (0..40)
            .filter(|k| k % 3 != 0)
            .map(|k| (k, k * 10))
            .collect();
        for keys in [
            vec![],
            vec![1, 2, 3, 4, 5],
            vec![0, 0, 1, 1, 39, 40, 41],
            (0..45).collect::<Vec<_>>(),
            vec![5, 1, 7, 3],
            vec![38],
        ] {
            let found = lookup_all(&map, &keys);
            let expected: Vec<Option<&u32>> = keys.iter().map(|k| map.get(k)).collect();
            assert_eq!(found, expected, "{keys:?}");
        }
    }
}
