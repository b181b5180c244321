//! The Lua scripts that make the generation protocol's compare-and-set steps atomic (see the module doc of
//! `cache`), and the random tokens they compare. The lookup needs no script: it is one native command (`read`).

/// `KEYS[1]` the scope's token, `ARGV[1]` a fresh token: sets it unless the scope has a token (a write or another
/// lookup set it meanwhile), and returns whichever it has. Only after a lookup found no token, so rare: sent as
/// `EVAL`, never `EVALSHA`, which a Redis that has not seen the script refuses. (`SET NX GET` does the same
/// natively, but only from Redis 7.0.)
pub const CLAIM: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// `KEYS[1]` entry, `KEYS[2]` the scope's token, for a catalogue entry `KEYS[3]` the catalogue index; `ARGV`
/// token read at lookup, value, TTL in ms. Stores the value only while the scope still has that token; 1 when
/// stored. A catalogue entry is listed in the index with its expiry; expired members are dropped there and then,
/// so the index holds about as many members as there are live entries, and it expires with them. The index comes
/// first: if Redis refuses it (a key of the wrong type), the script stops before an entry no write could find is
/// stored.
pub const FILL: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  if KEYS[3] then
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    local ttl = tonumber(ARGV[3])
    redis.call('ZADD', KEYS[3], now + ttl, KEYS[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
  end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// `KEYS[1]` catalogue index, `KEYS[2..n+1]` the tokens of the n scopes written, then the entries to remove;
/// `ARGV[1]` `1` when the catalogue changed (its indexed entries are removed too), then the n new tokens.
/// Returns `{removed, catalogue}`: how many of the entries given were removed, and the catalogue entries removed.
pub const BUMP_AND_UNLINK: &str = r"
local n = #ARGV - 1
for i = 1, n do redis.call('SET', KEYS[1 + i], ARGV[1 + i]) end
local count = 0
for i = n + 2, #KEYS do count = count + redis.call('UNLINK', KEYS[i]) end
local removed = {}
if ARGV[1] == '1' then
  for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('UNLINK', k) == 1 then removed[#removed + 1] = k end
  end
  redis.call('UNLINK', KEYS[1])
end
return {count, removed}
";

/// `KEYS[1]` the scope's token, `ARGV[1]` token read at lookup: removes the token while it is still that one.
/// After a lookup of a product that does not exist, so made-up ids leave nothing behind. As safe as an eviction
/// of the token: tokens are random, a removed one never becomes valid again.
pub const FORGET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
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
