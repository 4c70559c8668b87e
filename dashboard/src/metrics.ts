// Reading the node's metrics document: series lookup, counter rates between two polls, and
// histogram quantiles computed as Prometheus's histogram_quantile does.

import type { MetricFamily, MetricSample, MetricsDoc } from './api';

/** Two polls of one node's metrics: the newest, and the one before it (if any). */
export interface MetricsWindow {
  cur: MetricsDoc;
  prev: MetricsDoc | null;
}

/** A stable key for a label set. */
export function labelKey(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

export function family(doc: MetricsDoc | null | undefined, name: string): MetricFamily | undefined {
  return doc?.families.find((f) => f.name === name);
}

/** Every sample of `name` whose labels include `match`. */
export function samples(doc: MetricsDoc | null | undefined, name: string, match: Record<string, string> = {}): MetricSample[] {
  const fam = family(doc, name);
  if (!fam) return [];
  return fam.metrics.filter((m) => Object.entries(match).every(([k, v]) => m.labels[k] === v));
}

/** The sum of the values of `name`'s samples matching `match`; undefined when there is none. */
export function total(doc: MetricsDoc | null | undefined, name: string, match: Record<string, string> = {}): number | undefined {
  const found = samples(doc, name, match);
  if (found.length === 0) return undefined;
  return found.reduce((acc, m) => acc + (m.value ?? 0), 0);
}

/** The increase of a counter from `before` to `after` (a smaller value means a restart). */
export function increase(after: number, before: number | undefined): number {
  if (before === undefined || after < before) return after;
  return after - before;
}

/** Seconds between the two polls, or null when there is one poll only. */
export function windowSeconds(w: MetricsWindow): number | null {
  if (!w.prev) return null;
  const dt = (w.cur.at_ms - w.prev.at_ms) / 1000;
  return dt > 0 ? dt : null;
}

/** Per second increase of the sum of `name`'s samples matching `match`; null without a window. */
export function rate(w: MetricsWindow, name: string, match: Record<string, string> = {}): number | null {
  const dt = windowSeconds(w);
  const now = total(w.cur, name, match);
  if (dt === null || now === undefined) return null;
  return increase(now, total(w.prev, name, match) ?? 0) / dt;
}

/** The values of `name` grouped by label `by` (summing the other labels), with per second rates. */
export function byLabel(w: MetricsWindow, name: string, by: string): { label: string; value: number; rate: number | null }[] {
  const dt = windowSeconds(w);
  const sum = (doc: MetricsDoc | null) => {
    const out = new Map<string, number>();
    for (const m of samples(doc, name)) {
      const key = m.labels[by] ?? '';
      out.set(key, (out.get(key) ?? 0) + (m.value ?? 0));
    }
    return out;
  };
  const now = sum(w.cur);
  const before = sum(w.prev);
  return [...now.entries()]
    .map(([label, value]) => ({
      label,
      value,
      rate: dt === null ? null : increase(value, before.get(label) ?? 0) / dt,
    }))
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
}

/** A histogram's cumulative buckets (upper bound, count) and its total count. */
export interface Buckets {
  buckets: [number, number][];
  count: number;
}

/** The observations of `cur` not yet in `prev`: null when the bounds differ or none came. */
export function histogramDelta(cur: Buckets, prev: Buckets | undefined): Buckets | null {
  if (!prev) return null;
  if (prev.buckets.length !== cur.buckets.length) return null;
  if (prev.buckets.some(([le], i) => le !== cur.buckets[i][0])) return null;
  const count = cur.count - prev.count;
  if (count <= 0) return null;
  return {
    buckets: cur.buckets.map(([le, c], i) => [le, c - prev.buckets[i][1]]),
    count,
  };
}

/**
 * The `q` quantile (0..1) of a histogram, as Prometheus's histogram_quantile: the bucket that
 * holds the rank, linear interpolation inside it (from 0 for the first bucket), and the highest
 * finite bound when the rank falls in the implied +Inf bucket. NaN when the histogram is empty.
 */
export function quantile(q: number, h: Buckets): number {
  if (h.count <= 0 || h.buckets.length === 0) return NaN;
  const rank = q * h.count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, cumulative] of h.buckets) {
    if (cumulative >= rank) {
      const inBucket = cumulative - lowerCount;
      if (inBucket <= 0) return le;
      return lowerBound + (le - lowerBound) * ((rank - lowerCount) / inBucket);
    }
    lowerBound = le;
    lowerCount = cumulative;
  }
  return h.buckets[h.buckets.length - 1][0];
}

/** A histogram sample's quantiles over the last window, or cumulative when nothing came in it. */
export interface Quantiles {
  p50: number;
  p99: number;
  /** Observations the quantiles are computed from. */
  count: number;
  /** True when computed over the last window; false for since-start. */
  windowed: boolean;
}

function asBuckets(m: MetricSample | undefined): Buckets | undefined {
  if (!m || !m.buckets) return undefined;
  return { buckets: m.buckets, count: m.count ?? 0 };
}

/** The quantiles of histogram `name`'s series with exactly `labels`. */
export function histogramQuantiles(w: MetricsWindow, name: string, labels: Record<string, string>): Quantiles | null {
  const key = labelKey(labels);
  const find = (doc: MetricsDoc | null) => asBuckets(samples(doc, name).find((m) => labelKey(m.labels) === key));
  const cur = find(w.cur);
  if (!cur) return null;
  const delta = histogramDelta(cur, find(w.prev));
  const used = delta ?? cur;
  return { p50: quantile(0.5, used), p99: quantile(0.99, used), count: used.count, windowed: delta !== null };
}
