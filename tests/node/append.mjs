// Append events for owner node-agent from Node.js with the npm `redis` package
// (docs/wire-protocol.md). tests/test_wire_protocol.py runs this file for real.
import { createHash } from 'node:crypto';
import { createClient } from 'redis';

const OWNER = 'node-agent';

// Wire contract: P = int(sha1(owner)[:8], 16) % partitions. Eight hex digits fit a double.
function partitionOf(owner, partitions) {
  const sha = createHash('sha1').update(owner, 'utf8').digest('hex');
  return parseInt(sha.slice(0, 8), 16) % partitions;
}

const client = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
await client.connect();
try {
  // The partition count is fixed at `memstream init`; read it, never assume 16.
  const partitions = Number(await client.hGet('ms:meta', 'partitions'));
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new Error('ms:meta has no partitions: run memstream init first');
  }
  const p = partitionOf(OWNER, partitions);
  const log = `ms:{${p}}:log:${OWNER}`;
  const feed = `ms:{${p}}:feed`;

  // Resolves to [logId, feedId]; an invalid append rejects with "ERR memstream: <reason>".
  const append = (args) => client.sendCommand(['FCALL', 'ms_append', '2', log, feed, ...args]);

  const message = [
    'type', 'message.appended',
    'data', JSON.stringify({ role: 'user', content: 'hello from node' }),
    'ct', 'json', 'session', 'n1', 'eid', 'node-1',
  ];
  const first = await append(message);
  // A retry (say, after a timeout) carries the same eid: it returns the first ids and
  // writes nothing, so the event is stored once.
  const retry = await append(message);
  const step = await append([
    'type', 'step.recorded',
    'data', JSON.stringify({ action: 'search docs', observation: '3 hits', success: true }),
    'ct', 'json', 'eid', 'node-2',
  ]);
  console.log(JSON.stringify({ owner: OWNER, partition: p, log, feed, first, retry, step }));
} finally {
  await client.close();
}
