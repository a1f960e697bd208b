//! Where a user's keys live: names derived from the user id that land in the id's cluster slot.
//!
//! Redis hashes a key by its hash tag (the bytes between the first `{` and the next `}`, when that
//! is non-empty) or else the whole key. A user id with a tag (`a{b}c` → `b`) gets `rec:{b}:u:a{b}c`;
//! a plain id gets `rec:{alice}:u`. An id that hashes whole but contains `}` (`a}b`, `{}x`) can't be
//! put inside a tag, so its key has no tag at all (`rec:h:<hex>:u:` plus a short suffix) and the
//! suffix is solved so that CRC16 of the whole key lands in the id's slot.

use std::sync::OnceLock;

/// CRC16-XMODEM as Redis Cluster uses it (polynomial 0x1021, initial value 0).
pub fn crc16(data: &[u8]) -> u16 {
    crc16_from(0, data)
}

fn crc16_from(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The bytes Redis hashes for a key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & 0x3FFF
}

/// For each 16-bit value v, the two bytes whose CRC (from a zero register) is v.
fn inverse_table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![0u16; 1 << 16];
        for m in 0..=u16::MAX {
            t[crc16(&m.to_be_bytes()) as usize] = m;
        }
        t
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The key holding `kind` (`u` user state, `c` cached lists) for `user`, under `prefix`
/// (which carries no braces: the config rejects them).
pub fn user_key(prefix: &[u8], user: &[u8], kind: u8) -> Vec<u8> {
    let tag = hash_tag(user);
    let mut k = Vec::with_capacity(prefix.len() + user.len() * 2 + 8);
    k.extend_from_slice(prefix);
    if !tag.contains(&b'}') {
        k.push(b'{');
        k.extend_from_slice(tag);
        k.extend_from_slice(b"}:");
        k.push(kind);
        if tag.len() != user.len() {
            k.push(b':');
            k.extend_from_slice(user);
        }
        return k;
    }
    // No tag can hold this id: a tag-free key whose whole CRC16 is solved into the id's slot.
    k.extend_from_slice(b"h:");
    for &b in user {
        k.push(HEX[(b >> 4) as usize]);
        k.push(HEX[(b & 15) as usize]);
    }
    k.extend_from_slice(b":");
    k.push(kind);
    k.push(b':');
    let want = crc16(user) & 0x3FFF;
    // One free letter, then two solved bytes; CRC is linear, so crc(k || x || y) =
    // crc_of_register(k || x) shifted through two zero bytes XOR crc(x y).
    for first in b'a'..=b'z' {
        let mut base = k.clone();
        base.push(first);
        let reg = crc16_from(crc16(&base), &[0, 0]);
        for high in 0..4u16 {
            let target = want | (high << 14);
            let m = inverse_table()[(target ^ reg) as usize].to_be_bytes();
            if !m.contains(&b'{') && !m.contains(&b'}') {
                base.extend_from_slice(&m);
                return base;
            }
        }
    }
    // 26 letters x 4 choices all containing a brace does not happen; keep a valid (if
    // mis-slotted) key rather than fail.
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis_cluster_spec() {
        // The test vector from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
    }

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(hash_tag(b"a{b}c"), b"b");
        assert_eq!(hash_tag(b"a}b"), b"a}b");
        assert_eq!(hash_tag(b"{}x"), b"{}x");
        assert_eq!(hash_tag(b"{{a}"), b"{a");
        assert_eq!(hash_tag(b"x{a"), b"x{a");
    }

    #[test]
    fn derived_keys_land_in_the_user_slot() {
        let mut ids: Vec<Vec<u8>> = [
            "alice", "a{b}c", "a}b", "{}x", "{x}", "{{a}", "}", "{", "}{", "x{}{y}", "{}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..3000 {
            let len = (x % 9) as usize + 1;
            let mut id = Vec::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                id.push(match x % 5 {
                    0 => b'{',
                    1 => b'}',
                    _ => (x >> 8) as u8,
                });
            }
            ids.push(id);
        }
        for id in &ids {
            for kind in [b'u', b'c'] {
                let k = user_key(b"rec:", id, kind);
                assert_eq!(slot(&k), slot(id), "id {:?} key {:?}", id, k);
            }
            assert_ne!(user_key(b"rec:", id, b'u'), user_key(b"rec:", id, b'c'));
        }
        assert_eq!(user_key(b"rec:", b"alice", b'u'), b"rec:{alice}:u");
        assert_eq!(user_key(b"rec:", b"a{b}c", b'u'), b"rec:{b}:u:a{b}c");
    }

    #[test]
    fn distinct_users_get_distinct_keys() {
        let ids: [&[u8]; 6] = [b"b", b"a{b}c", b"x{b}", b"{b}", b"a}b", b"}"];
        let keys: std::collections::HashSet<Vec<u8>> =
            ids.iter().map(|id| user_key(b"rec:", id, b'u')).collect();
        assert_eq!(keys.len(), ids.len());
    }
}
