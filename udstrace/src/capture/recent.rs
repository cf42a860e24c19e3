//! A map that remembers the keys used lately and forgets the rest: two generations, the
//! current one and the one before. A key read or written moves to (or stays in) the current
//! generation; when the current generation is full it becomes the old one and the old one is
//! dropped, its memory with it. A key in use stays; one unused while `capacity` other keys
//! came is forgotten. At most `2 * capacity` entries are held whatever the rate of new keys,
//! and a table is never kept at the size of a past burst (as `HashMap::clear` would).

use std::hash::Hash;

use crate::hash::FastMap;

pub(crate) struct Recent<K, V> {
    current: FastMap<K, V>,
    old: FastMap<K, V>,
    capacity: usize,
    /// Generations dropped so far.
    pub(crate) turnovers: u64,
}

impl<K: Hash + Eq + Copy, V> Recent<K, V> {
    /// Keeps the last `capacity` to `2 * capacity` keys used. A capacity just under 7/8 of a
    /// power of two fills the hash table it allocates.
    #[must_use]
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            current: FastMap::default(),
            old: FastMap::default(),
            capacity: capacity.max(1),
            turnovers: 0,
        }
    }

    /// Entries held (both generations).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }

    /// Makes room for one more key in the current generation.
    fn room(&mut self) {
        if self.current.len() >= self.capacity {
            self.old = std::mem::take(&mut self.current);
            self.turnovers += 1;
        }
    }

    /// The value of `key`, moved to the current generation.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.current.contains_key(key) {
            let value = self.old.remove(key)?;
            self.room();
            self.current.insert(*key, value);
        }
        self.current.get_mut(key)
    }

    /// The value of `key`, without moving it.
    #[must_use]
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.current.get(key).or_else(|| self.old.get(key))
    }

    /// The value of `key`, inserted with `make` when it has none.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.current.contains_key(&key) {
            let value = self.old.remove(&key).unwrap_or_else(make);
            self.room();
            self.current.insert(key, value);
        }
        self.current.get_mut(&key).expect("just inserted")
    }

    /// Sets the value of `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if let Some(v) = self.current.get_mut(&key) {
            *v = value;
            return;
        }
        self.old.remove(&key);
        self.room();
        self.current.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn keeps_what_is_used_and_forgets_the_rest() {
        let mut r = Recent::new(4);
        r.insert(1u64, "live");
        for k in 100..1000u64 {
            r.insert(k, "once");
            // The live key is used all along: it never goes.
            assert_eq!(r.get_mut(&1).copied(), Some("live"));
            assert!(r.len() <= 8);
        }
        assert_eq!(r.peek(&100), None);
        assert_eq!(r.peek(&999), Some(&"once"));
        assert!(r.turnovers > 200);
    }

    #[test]
    fn an_old_key_comes_back_with_its_value() {
        let mut r = Recent::new(2);
        *r.get_or_insert_with(1u32, || 10) += 1;
        r.insert(2, 20);
        r.insert(3, 30); // 1 and 2 are now the old generation
        assert_eq!(r.peek(&1), Some(&11));
        assert_eq!(*r.get_or_insert_with(1, || 0), 11);
        r.insert(4, 40);
        r.insert(5, 50);
        // 2 was never used again: gone.
        assert_eq!(r.peek(&2), None);
        assert_eq!(r.get_mut(&2), None);
        assert_eq!(r.peek(&5), Some(&50));
    }

    #[test]
    fn memory_of_a_burst_is_given_back() {
        let mut r = Recent::new(1000);
        for k in 0..100_000u64 {
            r.insert(k, [0u8; 32]);
        }
        // Two generations at most, however many keys came.
        assert!(r.current.capacity() < 4096 && r.old.capacity() < 4096);
    }
}
