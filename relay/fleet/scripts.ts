/**
 * The fleet store's server-side scripts: every check-and-update the relays share runs as one Lua script
 * on the store, so two pods can never both read "one slot left" and both take it.
 *
 * The scripts are handed to @redis/client's `scripts` option (defineScript): the client sends EVALSHA and,
 * on NOSCRIPT (a store that restarted, failed over or ran SCRIPT FLUSH), sends the script itself with EVAL.
 * That works on Redis >= 7 and Valkey alike without a per-server FUNCTION LOAD step (ADR 60).
 *
 * Invariants
 * - Time is the store's (`redis.call('TIME')`), never a pod's: pods' clocks may disagree, the store has one.
 *   Redis 7 replicates scripts by their effects, so reading TIME in a script that writes is allowed.
 * - Every key a script touches is passed in KEYS (pushKey), so the client's keyPrefix applies to it and the
 *   scripts would stay valid on a cluster if the keys of one call shared a hash slot.
 * - Every key written gets an expiry: an idle fleet leaves nothing behind, a killed pod's state times out.
 * - Numbers written are formatted with string.format, never Lua's %.14g tostring (no exponents, no loss
 *   of the millisecond fraction); times are milliseconds since the epoch as the store's clock sees them.
 *
 * Key layout (after the store's keyPrefix): see store.ts.
 */
import { defineScript, type CommandParser } from '@redis/client';

/** Lua prelude shared by the scripts: the store's clock in milliseconds (with its microseconds). */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function ms(x) return string.format('%.3f', x) end
local function whole(x) return string.format('%.0f', math.ceil(x)) end
`;

/**
 * GCRA (generic cell rate algorithm), the token bucket of relay/policy/rate-limit.ts in one number: the
 * key holds the TAT (theoretical arrival time). With interval T = 60000/perMinute ms and burst b, a take at
 * `now` is allowed when TAT - now <= (b - 1) * T, and moves TAT to max(TAT, now) + T. With b = perMinute
 * that is the local bucket exactly: capacity perMinute, refilling perMinute/60 per second, and the same
 * retry-after (the time until one whole token is back). A refusal writes nothing.
 *
 * KEYS[1] rate key; ARGV[1] interval ms (float), ARGV[2] burst (>= 1).
 * Returns { allowed 1|0, retryAfterMs }.
 */
export const TAKE_RATE = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `${NOW}
local interval = tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
if tat - now > tolerance then
  return { 0, math.ceil(tat - now - tolerance) }
end
local nextTat = tat + interval
-- Once TAT has passed the bucket is full again, which is what a missing key means: let it expire then.
redis.call('SET', KEYS[1], ms(nextTat), 'PX', whole(nextTat - now))
return { 1, 0 }
`,
  parseCommand(parser: CommandParser, key: string, intervalMs: number, burst: number) {
    parser.pushKey(key);
    parser.push(String(intervalMs), String(burst));
  },
  transformReply: (reply: unknown) => reply as [number, number],
});

/** Drop expired holders, then the key's expiry follows its longest lease. */
const LEASE_HELPERS = `
local function prune(key) redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(now)) end
local function expireWithLastLease(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, whole(tonumber(last[2]))) end
end
`;

/**
 * A concurrency lease: a sorted set of holder id → expiry (ms). Expired holders are dropped first (a
 * killed pod's leases free themselves after their ttl), then the holder is admitted if fewer than
 * `limit` hold one. A holder that already holds the lease is renewed, never counted twice.
 *
 * KEYS[1] lease key; ARGV[1] limit, ARGV[2] holder id, ARGV[3] ttl ms. Returns 1 (held) or 0 (full).
 */
export const ACQUIRE_LEASE = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `${NOW}${LEASE_HELPERS}
local key, limit, holder, ttl = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
prune(key)
if redis.call('ZSCORE', key, holder) or redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, ms(now + ttl), holder)
  expireWithLastLease(key)
  return 1
end
return 0
`,
  parseCommand(parser: CommandParser, key: string, limit: number, holder: string, ttlMs: number) {
    parser.pushKey(key);
    parser.push(String(limit), holder, String(ttlMs));
  },
  transformReply: (reply: unknown) => reply as number,
});

/**
 * A delivery's admission at a site, in one call: a lease of the site's connections and, when the site
 * has a rate, one message of it. Both or neither: a job refused by the rate holds no slot, one refused a
 * slot takes no token. KEYS[1] lease key, KEYS[2] rate key; ARGV[1] limit, ARGV[2] holder id, ARGV[3]
 * ttl ms, ARGV[4] rate interval ms (0: no rate), ARGV[5] burst.
 * Returns { 1 } (admitted), { 0, 'connections' } or { 0, 'rate', retryAfterMs }.
 */
export const ADMIT = defineScript({
  NUMBER_OF_KEYS: 2,
  SCRIPT: `${NOW}${LEASE_HELPERS}
local key, rateKey = KEYS[1], KEYS[2]
local limit, holder, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local interval, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
prune(key)
if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= limit then
  return { 0, 'connections' }
end
if interval > 0 then
  local tolerance = (burst - 1) * interval
  local tat = tonumber(redis.call('GET', rateKey) or '') or now
  if tat < now then tat = now end
  if tat - now > tolerance then return { 0, 'rate', math.ceil(tat - now - tolerance) } end
  local nextTat = tat + interval
  redis.call('SET', rateKey, ms(nextTat), 'PX', whole(nextTat - now))
end
redis.call('ZADD', key, ms(now + ttl), holder)
expireWithLastLease(key)
return { 1 }
`,
  parseCommand(
    parser: CommandParser,
    leaseKey: string,
    rateKey: string,
    limit: number,
    holder: string,
    ttlMs: number,
    intervalMs: number,
    burst: number,
  ) {
    parser.pushKeys([leaseKey, rateKey]);
    parser.push(String(limit), holder, String(ttlMs), String(intervalMs), String(burst));
  },
  transformReply: (reply: unknown) => reply as [number, string?, number?],
});

/**
 * Extends a held lease to now + ttl. A lease that expired and was dropped is not revived: its slot may
 * already be someone else's. KEYS[1] lease key; ARGV[1] holder, ARGV[2] ttl ms. Returns 1 or 0 (lost).
 */
export const RENEW_LEASE = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `${NOW}${LEASE_HELPERS}
local key, holder, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
prune(key)
if not redis.call('ZSCORE', key, holder) then return 0 end
redis.call('ZADD', key, ms(now + ttl), holder)
expireWithLastLease(key)
return 1
`,
  parseCommand(parser: CommandParser, key: string, holder: string, ttlMs: number) {
    parser.pushKey(key);
    parser.push(holder, String(ttlMs));
  },
  transformReply: (reply: unknown) => reply as number,
});

/**
 * Suppresses an address until now + ttl: the entry (a hash: reason, until) expires by itself, and the
 * index (a sorted set address → until, for listing in expiry order) drops what has expired on every
 * write, so it never outgrows the live entries by more than what expired since the last write.
 * A second suppress of the same address replaces reason and expiry (the latest decision wins).
 *
 * KEYS[1] entry key, KEYS[2] index key; ARGV[1] address, ARGV[2] reason, ARGV[3] ttl ms.
 * Returns the expiry (ms, as a string).
 */
export const SUPPRESS = defineScript({
  NUMBER_OF_KEYS: 2,
  SCRIPT: `${NOW}
local entry, index, address, reason, ttl = KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3])
local untilMs = now + ttl
redis.call('HSET', entry, 'reason', reason, 'until', ms(untilMs))
redis.call('PEXPIREAT', entry, whole(untilMs))
redis.call('ZADD', index, ms(untilMs), address)
redis.call('ZREMRANGEBYSCORE', index, '-inf', ms(now))
local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', index, whole(tonumber(last[2])))
return ms(untilMs)
`,
  parseCommand(
    parser: CommandParser,
    entryKey: string,
    indexKey: string,
    address: string,
    reason: string,
    ttlMs: number,
  ) {
    parser.pushKeys([entryKey, indexKey]);
    parser.push(address, reason, String(ttlMs));
  },
  transformReply: (reply: unknown) => String(reply),
});

/** Removes an entry and its index member together. Returns 1 if the entry existed, else 0. */
export const UNSUPPRESS = defineScript({
  NUMBER_OF_KEYS: 2,
  SCRIPT: `
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
`,
  parseCommand(parser: CommandParser, entryKey: string, indexKey: string, address: string) {
    parser.pushKeys([entryKey, indexKey]);
    parser.push(address);
  },
  transformReply: (reply: unknown) => reply as number,
});

/**
 * One page of the index in (until, address) order, after the cursor (until, address). When the cursor's
 * member is still there at the same score the page starts right after it; when it is gone (expired,
 * removed, re-suppressed) the page starts at the cursor's score, so entries may repeat across pages but
 * an entry present for the whole listing is never skipped (SCAN's guarantee, in a defined order).
 * Expired members are dropped first. Reasons are read by the caller (the entries' keys are not declared
 * here: only KEYS may be touched).
 *
 * KEYS[1] index; ARGV[1] cursor until ('' = from the start), ARGV[2] cursor address, ARGV[3] page size.
 * Returns a flat list address, until, address, until, ...
 */
export const LIST_SUPPRESSED = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `${NOW}
local index, cursorUntil, cursorAddress, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', index, '-inf', ms(now))
local start = 0
if cursorUntil ~= '' then
  local rank = redis.call('ZRANK', index, cursorAddress)
  local score = rank and redis.call('ZSCORE', index, cursorAddress)
  if rank and tonumber(score) == tonumber(cursorUntil) then
    start = rank + 1
  else
    start = redis.call('ZCOUNT', index, '-inf', '(' .. cursorUntil)
  end
end
return redis.call('ZRANGE', index, start, start + limit - 1, 'WITHSCORES')
`,
  parseCommand(
    parser: CommandParser,
    indexKey: string,
    cursorUntil: string,
    cursorAddress: string,
    limit: number,
  ) {
    parser.pushKey(indexKey);
    parser.push(cursorUntil, cursorAddress, String(limit));
  },
  transformReply: (reply: unknown) => (reply as unknown[]).map(String),
});

export const fleetScripts = {
  takeRate: TAKE_RATE,
  acquireLease: ACQUIRE_LEASE,
  admit: ADMIT,
  renewLease: RENEW_LEASE,
  suppress: SUPPRESS,
  unsuppress: UNSUPPRESS,
  listSuppressed: LIST_SUPPRESSED,
};
