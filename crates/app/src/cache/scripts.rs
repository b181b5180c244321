//! The Lua scripts that make the generation protocol's compare-and-set steps atomic (see the module doc of
//! `cache`), and the random tokens they compare. The lookup needs no script: it is native commands (`read`).

/// `KEYS[1]` generations hash, `ARGV[1]` scope field, `ARGV[2]` a fresh token: sets the token unless the scope has
/// one (a write or another lookup set it meanwhile), and returns whichever it has. Only after a lookup found no
/// token, so rare: sent as `EVAL`, one command however new the Redis.
pub const CLAIM: &str = r"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
";

/// `KEYS[1]` entry, `KEYS[2]` generations hash, for a catalogue entry `KEYS[3]` the catalogue index; `ARGV`
/// field, token read at lookup, value, TTL in ms. Stores the value only while the scope still has that token;
/// 1 when stored. A catalogue entry is listed in the index with its expiry; expired members are dropped there
/// and then, so the index holds about as many members as there are live entries, and it expires with them.
pub const FILL: &str = r"
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  if KEYS[3] then
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    local ttl = tonumber(ARGV[4])
    redis.call('ZADD', KEYS[3], now + ttl, KEYS[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
  end
  return 1
end
return 0
";

/// `KEYS[1]` generations hash, `KEYS[2]` catalogue index, `KEYS[3..]` entries to remove; `ARGV[1]` `1` when
/// the catalogue changed (its indexed entries are removed too), then (field, new token) pairs.
/// Returns `{n, removed}`: how many of `KEYS[3..]` were removed, and the catalogue entries removed.
pub const BUMP_AND_UNLINK: &str = r"
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local n = 0
for i = 3, #KEYS do n = n + redis.call('UNLINK', KEYS[i]) end
local removed = {}
if ARGV[1] == '1' then
  for _, k in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('UNLINK', k) == 1 then removed[#removed + 1] = k end
  end
  redis.call('UNLINK', KEYS[2])
end
return {n, removed}
";

/// `KEYS[1]` generations hash, `ARGV[1]` scope field, `ARGV[2]` token read at lookup: removes the field while it
/// still holds that token. After a lookup of a product that does not exist, so made-up ids leave nothing behind.
/// As safe as an eviction of the hash: tokens are random, a removed one never becomes valid again.
pub const FORGET: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
";

/// `KEYS[1]` lock, `ARGV[1]` owner: releases the lock only if this replica still holds it.
pub const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A random 64-bit token in 16 hex digits, kept on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token([u8; 16]);

impl Token {
    pub fn new() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = rand::random::<u64>();
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        Token(digits)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random() {
        assert_ne!(Token::new(), Token::new());
        assert_eq!(Token::new().as_str().len(), 16);
        assert!(Token::new().as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
