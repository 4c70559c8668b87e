// The metric arithmetic of src/metrics.ts (compiled by `npm test` into target/dashboard-test/),
// against values worked out by hand and against what Prometheus's histogram_quantile returns.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { byLabel, histogramDelta, histogramQuantiles, quantile, rate } from '../../target/dashboard-test/metrics.js';

const h = (buckets, count) => ({ buckets, count });

test('a quantile interpolates linearly inside the bucket holding the rank', () => {
  // 100 observations: 10 up to 1 ms, 60 up to 2 ms, 100 up to 4 ms.
  const hist = h([[0.001, 10], [0.002, 60], [0.004, 100]], 100);
  // Rank 50 is 40 of the 50 between 1 and 2 ms.
  assert.equal(quantile(0.5, hist), 0.001 + 0.001 * (40 / 50));
  // Rank 99 is 39 of the 40 between 2 and 4 ms.
  assert.equal(quantile(0.99, hist), 0.002 + 0.002 * (39 / 40));
  // The first bucket starts at 0.
  assert.equal(quantile(0.05, hist), 0.001 * (5 / 10));
});

test('a rank in the implied +Inf bucket gives the highest finite bound; none gives NaN', () => {
  assert.equal(quantile(0.99, h([[0.001, 10], [0.002, 20]], 100)), 0.002);
  assert.ok(Number.isNaN(quantile(0.5, h([[0.001, 0]], 0))));
});

test('quantiles use the observations between two polls, else everything since start', () => {
  const doc = (at_ms, buckets, count) => ({
    node_id: 'n1',
    at_ms,
    families: [{ name: 'lat', type: 'histogram', help: '', metrics: [{ labels: { kind: 'trade' }, count, sum: 0, buckets }] }],
  });
  // Before: 100 fast observations. Between the polls: 10 more, all in (2 ms, 4 ms].
  const prev = doc(1000, [[0.001, 100], [0.002, 100], [0.004, 100]], 100);
  const cur = doc(3000, [[0.001, 100], [0.002, 100], [0.004, 110]], 110);
  const windowed = histogramQuantiles({ cur, prev }, 'lat', { kind: 'trade' });
  assert.equal(windowed.windowed, true);
  assert.equal(windowed.count, 10);
  // Ranks 5 and 9.9 of the 10 in (2 ms, 4 ms].
  assert.ok(Math.abs(windowed.p50 - 0.003) < 1e-12, `p50 ${windowed.p50}`);
  assert.ok(Math.abs(windowed.p99 - (0.002 + 0.002 * 0.99)) < 1e-12, `p99 ${windowed.p99}`);
  // Nothing new between the polls: the cumulative histogram.
  const still = histogramQuantiles({ cur, prev: cur }, 'lat', { kind: 'trade' });
  assert.equal(still.windowed, false);
  assert.equal(still.count, 110);
  assert.equal(histogramDelta(h([[1, 1]], 1), h([[2, 1]], 1)), null, 'different bounds');
});

test('rates divide the increase by the time between the two polls, and survive a restart', () => {
  const doc = (at_ms, values) => ({
    node_id: 'n1',
    at_ms,
    families: [{ name: 'drops', type: 'counter', help: '', metrics: values.map(([reason, value]) => ({ labels: { reason }, value })) }],
  });
  const prev = doc(1000, [['a', 10], ['b', 5]]);
  const cur = doc(3000, [['a', 30], ['b', 5], ['c', 4]]);
  assert.equal(rate({ cur, prev }, 'drops'), (39 - 15) / 2);
  assert.deepEqual(byLabel({ cur, prev }, 'drops', 'reason'), [
    { label: 'a', value: 30, rate: 10 },
    { label: 'b', value: 5, rate: 0 },
    { label: 'c', value: 4, rate: 2 },
  ]);
  // A counter below its previous value restarted from 0.
  assert.equal(rate({ cur: doc(3000, [['a', 4]]), prev }, 'drops', { reason: 'a' }), 2);
  assert.equal(rate({ cur, prev: null }, 'drops'), null);
});
