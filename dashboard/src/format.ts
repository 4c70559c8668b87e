// Number, duration and time formatting for the tables.

export function num(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A rate: one decimal below 100, none above. */
export function perSec(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return num(v, Math.abs(v) < 100 ? 1 : 0);
}

/** Seconds as µs, ms or s. */
export function seconds(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v < 0.001) return `${num(v * 1e6, v < 0.00001 ? 1 : 0)} µs`;
  if (v < 1) return `${num(v * 1000, v < 0.01 ? 2 : 1)} ms`;
  return `${num(v, 2)} s`;
}

export function bytes(v: number): string {
  if (v < 1024) return `${v} B`;
  if (v < 1 << 20) return `${num(v / 1024, 1)} KiB`;
  return `${num(v / (1 << 20), 1)} MiB`;
}

/** How long ago `ms` (epoch milliseconds) was, from `now`. */
export function age(ms: number, now: number): string {
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return `${num(s, 1)} s`;
  if (s < 3600) return `${num(s / 60, 0)} min`;
  return `${num(s / 3600, 1)} h`;
}

export function when(ms: number | null | undefined): string {
  if (!ms) return '—';
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
