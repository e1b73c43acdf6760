#!lua name=salon
-- The Redis side of salon's cluster bus (salon/net/bus.py loads it with FUNCTION LOAD
-- REPLACE). Redis runs one function at a time, so the entries XADDed to the log stream are
-- in one total order: the order every node applies.
--
-- Keys, under the cluster's prefix P:
--   P:epoch     counter: each node that starts takes the next number (its incarnation)
--   P:nodes     hash: node number -> node name, the nodes not yet reaped
--   P:node:<n>  node n's heartbeat, with a TTL; gone = node n is dead. Its value names the
--               process that holds number n (its name and a random part): a node whose
--               value is replaced (another process took the number) is fenced too
--   P:log       the stream of entries (field "e": one turn's JSON texts, one a line)
--   P:state     hash: node number -> "<last entry id applied> <users>", for salon cluster status
--   P:run       a random text the first node to join (or to rejoin after Redis lost its data)
--               sets: a node that finds another one, or none, knows Redis lost the data
--   P:calm      set for a while when a node rejoins after a Redis restart: no node is
--               reaped meanwhile (every heartbeat may have expired while Redis was away)

-- salon_join(KEYS epoch nodes run, ARGV name ttl_ms prefix run ident)
-- -> {the new node's number, run}
local function join(keys, args)
  local n = redis.call('INCR', keys[1])
  redis.call('SET', args[3] .. ':node:' .. n, args[5], 'PX', args[2])
  redis.call('HSET', keys[2], n, args[1])
  redis.call('SET', keys[3], args[4], 'NX')
  return {n, redis.call('GET', keys[3])}
end

-- salon_rejoin(KEYS nodes node epoch run calm, ARGV n name ttl_ms new_run highest run ident)
-- -> the run. A node that was alive when Redis went away takes its place again, under its
-- own number. Refused (fenced) when Redis kept its data (the run the node knew) and the
-- node was reaped meanwhile. When Redis lost its data, the first node back sets a new
-- run, and the node numbers go on after the highest the node knew (no new node takes a
-- number still in use). A node that started on the empty Redis before and took this
-- number loses it (its heartbeat key now names this node): it draws another one, or is
-- fenced.
local function rejoin(keys, args)
  local run = redis.call('GET', keys[4])
  if run == args[6] and redis.call('HEXISTS', keys[1], args[1]) == 0 then
    return redis.error_reply('FENCED this node was declared dead')
  end
  if not run then
    run = args[4]
    redis.call('SET', keys[4], run)
  end
  redis.call('SET', keys[2], args[7], 'PX', args[3])
  redis.call('HSET', keys[1], args[1], args[2])
  if tonumber(redis.call('GET', keys[3]) or '0') < tonumber(args[5]) then
    redis.call('SET', keys[3], args[5])
  end
  redis.call('SET', keys[5], args[1], 'PX', 2 * tonumber(args[3]))
  return run
end

-- salon_turn(KEYS node log, ARGV maxlen ident entry...) -> the id of the last entry added
-- One call per node per event-loop turn. Fenced: a node whose heartbeat key is gone (it
-- expired, or the node was reaped) or names another process adds nothing; it must drop
-- its clients.
local function turn(keys, args)
  if redis.call('GET', keys[1]) ~= args[2] then
    return redis.error_reply('FENCED this node was declared dead')
  end
  local last = ''
  for i = 3, #args do
    last = redis.call('XADD', keys[2], 'MAXLEN', '~', args[1], '*', 'e', args[i])
  end
  return last
end

-- salon_beat(KEYS node state, ARGV ident ttl_ms n info) -> 1, or 0 when the key is gone
-- or names another process (fenced); info is what salon cluster status shows of the node
local function beat(keys, args)
  if redis.call('GET', keys[1]) ~= args[1] then
    return 0
  end
  redis.call('SET', keys[1], args[1], 'PX', args[2])
  redis.call('HSET', keys[2], args[3], args[4])
  return 1
end

-- salon_reap(KEYS nodes node log state calm, ARGV n maxlen) -> 1 when this call declared node
-- n dead. Only once: the first node to see the heartbeat gone removes n from P:nodes and
-- adds the entry that makes every node quit n's users. Not while P:calm is set.
local function reap(keys, args)
  if redis.call('EXISTS', keys[2]) == 1 then
    return 0
  end
  if keys[5] and redis.call('EXISTS', keys[5]) == 1 then
    return 0
  end
  if redis.call('HDEL', keys[1], args[1]) == 0 then
    return 0
  end
  redis.call('HDEL', keys[4], args[1])
  local t = redis.call('TIME')
  local now = string.format('%d.%06d', t[1], t[2])
  local entry = '[0,0,' .. now .. ',0,"D",' .. args[1] .. ']'
  redis.call('XADD', keys[3], 'MAXLEN', '~', args[2], '*', 'e', entry)
  return 1
end

-- salon_leave(KEYS nodes node log state, ARGV n maxlen) -> 1: a node that stops cleanly is
-- declared dead at once, without waiting for its heartbeat to expire (the QUITs of its
-- users are in the log before this entry; any it could not send, this entry makes).
local function leave(keys, args)
  redis.call('DEL', keys[2])
  return reap(keys, args)
end

redis.register_function('salon_join', join)
redis.register_function('salon_rejoin', rejoin)
redis.register_function('salon_turn', turn)
redis.register_function('salon_beat', beat)
redis.register_function('salon_reap', reap)
redis.register_function('salon_leave', leave)
