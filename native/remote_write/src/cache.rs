//! The label-set cache one decoder keeps across requests: a fixed number of slots, each
//! holding one canonical label set, found by its canonical blob or by the raw wire bytes of
//! the labels it was validated from (so a series sent again skips parsing, validation and
//! canonicalisation: one hash of its label bytes). Replacement is CLOCK (second chance);
//! slots used by the current request are pinned, so a request's slots stay valid until it
//! returns. Python keeps the parsed form of each slot and is told which slots a request
//! filled; a refused request's new slots are emptied again (`rollback`), so Python never
//! holds a slot the cache thinks it knows.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use crate::wire::{refuse, DecodeError, Reason};

/// Raw encodings remembered per slot: senders use one; a hostile one cannot grow it.
const RAW_KEYS_PER_SLOT: usize = 4;

#[derive(Default)]
struct Slot {
    canonical: Vec<u8>,
    raws: Vec<u32>,
    occupied: bool,
    referenced: bool,
    used_in: u64,
    local: u32,
}

struct RawKey {
    key: Vec<u8>,
    slot: u32,
}

pub struct Cache {
    capacity: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    canonical: HashTable<u32>,
    raw: HashTable<u32>,
    raw_keys: Vec<RawKey>,
    raw_free: Vec<u32>,
    hand: usize,
    hasher: RandomState,
    request: u64,
    /// Slots filled by the current request, in order.
    pub created: Vec<u32>,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            slots: Vec::new(),
            free: Vec::new(),
            canonical: HashTable::new(),
            raw: HashTable::new(),
            raw_keys: Vec::new(),
            raw_free: Vec::new(),
            hand: 0,
            hasher: RandomState::default(),
            request: 0,
            created: Vec::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn begin_request(&mut self) {
        self.request += 1;
        self.created.clear();
    }

    pub fn canonical(&self, slot: u32) -> &[u8] {
        &self.slots[slot as usize].canonical
    }

    /// The slot validated from exactly these label bytes, if any.
    #[inline]
    pub fn find_raw(&mut self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let keys = &self.raw_keys;
        let id = *self.raw.find(hash, |&i| keys[i as usize].key == key)?;
        let slot = self.raw_keys[id as usize].slot;
        self.slots[slot as usize].referenced = true;
        Some(slot)
    }

    /// Remember that these label bytes validate to `slot`'s label set.
    pub fn add_raw(&mut self, key: &[u8], slot: u32) {
        if self.slots[slot as usize].raws.len() >= RAW_KEYS_PER_SLOT {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let id = match self.raw_free.pop() {
            Some(id) => {
                let entry = &mut self.raw_keys[id as usize];
                entry.key.clear();
                entry.key.extend_from_slice(key);
                entry.slot = slot;
                id
            }
            None => {
                self.raw_keys.push(RawKey {
                    key: key.to_vec(),
                    slot,
                });
                (self.raw_keys.len() - 1) as u32
            }
        };
        let (keys, hasher) = (&self.raw_keys, &self.hasher);
        self.raw
            .insert_unique(hash, id, |&i| hasher.hash_one(&keys[i as usize].key));
        self.slots[slot as usize].raws.push(id);
    }

    /// The slot of this canonical label set, filled now if new. `in_use` is how many
    /// distinct slots the current request uses; with all of them in use there is no slot
    /// to give (the request has more distinct label sets than the cache holds).
    pub fn slot_for(&mut self, blob: &[u8], in_use: usize) -> Result<u32, DecodeError> {
        let hash = self.hasher.hash_one(blob);
        let slots = &self.slots;
        if let Some(&slot) = self
            .canonical
            .find(hash, |&s| slots[s as usize].canonical == blob)
        {
            self.slots[slot as usize].referenced = true;
            return Ok(slot);
        }
        if in_use >= self.capacity {
            return refuse(
                Reason::TooLarge,
                format!(
                    "more than {} distinct label sets (the decoder's cache size)",
                    self.capacity
                ),
            );
        }
        let slot = self.empty_slot()?;
        let entry = &mut self.slots[slot as usize];
        entry.canonical.clear();
        entry.canonical.extend_from_slice(blob);
        entry.occupied = true;
        entry.referenced = false;
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.canonical.insert_unique(hash, slot, |&s| {
            hasher.hash_one(&slots[s as usize].canonical)
        });
        self.created.push(slot);
        Ok(slot)
    }

    /// `slot`'s request-local index, given one now (in `order`) on its first use.
    #[inline]
    pub fn local_index(&mut self, slot: u32, order: &mut Vec<u32>) -> (u32, bool) {
        let entry = &mut self.slots[slot as usize];
        if entry.used_in == self.request {
            return (entry.local, false);
        }
        entry.used_in = self.request;
        entry.local = order.len() as u32;
        order.push(slot);
        (entry.local, true)
    }

    /// Empty the slots the current (refused) request filled.
    pub fn rollback(&mut self) {
        for slot in std::mem::take(&mut self.created) {
            self.evict(slot);
            self.free.push(slot);
        }
    }

    /// Forget everything (after a caught panic, when the tables cannot be trusted).
    pub fn reset(&mut self) {
        *self = Cache::new(self.capacity);
    }

    fn empty_slot(&mut self) -> Result<u32, DecodeError> {
        if let Some(slot) = self.free.pop() {
            return Ok(slot);
        }
        if self.slots.len() < self.capacity {
            self.slots.push(Slot::default());
            return Ok((self.slots.len() - 1) as u32);
        }
        // CLOCK: a referenced slot gets a second chance; slots of this request are pinned.
        for _ in 0..2 * self.slots.len() + 1 {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let entry = &mut self.slots[slot];
            if entry.used_in == self.request {
                continue;
            }
            if entry.referenced {
                entry.referenced = false;
                continue;
            }
            self.evict(slot as u32);
            return Ok(slot as u32);
        }
        refuse(
            Reason::Internal,
            "label-set cache: no slot to replace".into(),
        )
    }

    fn evict(&mut self, slot: u32) {
        let s = slot as usize;
        if !self.slots[s].occupied {
            return;
        }
        let hash = self.hasher.hash_one(self.slots[s].canonical.as_slice());
        if let Ok(found) = self.canonical.find_entry(hash, |&i| i == slot) {
            found.remove();
        }
        for id in std::mem::take(&mut self.slots[s].raws) {
            let hash = self
                .hasher
                .hash_one(self.raw_keys[id as usize].key.as_slice());
            if let Ok(found) = self.raw.find_entry(hash, |&i| i == id) {
                found.remove();
            }
            self.raw_free.push(id);
        }
        let entry = &mut self.slots[s];
        entry.occupied = false;
        entry.referenced = false;
    }
}
