//! A map keyed by room and session ID that is read with borrowed IDs: the
//! decrypt path looks things up several times per event, and building
//! owned `(room, session)` keys for each lookup cost more than the lookups
//! (MEG-05: sessions are always found by room and session together).

use std::collections::BTreeMap;

/// Values by room ID, then session ID.
#[derive(Debug)]
pub(crate) struct BySession<T>(BTreeMap<String, BTreeMap<String, T>>);

impl<T> Default for BySession<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<T> BySession<T> {
    pub(crate) fn get(&self, room_id: &str, session_id: &str) -> Option<&T> {
        self.0.get(room_id)?.get(session_id)
    }

    pub(crate) fn get_mut(&mut self, room_id: &str, session_id: &str) -> Option<&mut T> {
        self.0.get_mut(room_id)?.get_mut(session_id)
    }

    /// Inserts, allocating keys only for a room or session not yet held.
    pub(crate) fn insert(&mut self, room_id: &str, session_id: &str, value: T) -> Option<T> {
        match self.0.get_mut(room_id) {
            Some(sessions) => match sessions.get_mut(session_id) {
                Some(slot) => Some(std::mem::replace(slot, value)),
                None => sessions.insert(session_id.to_owned(), value),
            },
            None => {
                let sessions = BTreeMap::from([(session_id.to_owned(), value)]);
                self.0.insert(room_id.to_owned(), sessions);
                None
            }
        }
    }

    /// Keeps only the values `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for sessions in self.0.values_mut() {
            sessions.retain(|_, value| keep(value));
        }
    }

    /// How many values, over every room.
    pub(crate) fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_and_session_both_select() {
        let mut map = BySession::default();
        assert_eq!(map.insert("!a", "s", 1), None);
        assert_eq!(map.insert("!b", "s", 2), None);
        assert_eq!(map.insert("!a", "t", 3), None);
        assert_eq!(map.insert("!a", "s", 4), Some(1));
        assert_eq!(map.get("!a", "s"), Some(&4));
        assert_eq!(map.get("!b", "s"), Some(&2));
        assert_eq!(map.get("!b", "t"), None);
        assert_eq!(map.len(), 3);
        if let Some(v) = map.get_mut("!a", "t") {
            *v = 5;
        }
        assert_eq!(map.get("!a", "t"), Some(&5));
        map.retain(|v| *v != 5);
        assert_eq!(map.get("!a", "t"), None);
        assert_eq!(map.len(), 2);
    }
}
