// Small building blocks: sparkline, stat tile, inline confirmation, section frame.

import { useState, type ReactNode } from 'react';
import { ApiError } from './api';

/** Samples kept for a sparkline: two minutes at the default refresh. */
export const HISTORY = 60;

/** Appends `v` to `history`, keeping the last [`HISTORY`] values. */
export function pushHistory(history: number[], v: number | null): number[] {
  if (v === null || Number.isNaN(v)) return history;
  const next = [...history, v];
  return next.length > HISTORY ? next.slice(next.length - HISTORY) : next;
}

export function Sparkline({ values, width = 120, height = 28 }: { values: number[]; width?: number; height?: number }) {
  if (values.length < 2) return <svg className="spark" width={width} height={height} aria-hidden="true" />;
  const max = Math.max(...values, 1e-9);
  const step = width / (values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  return (
    <svg className="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} aria-hidden="true">
      <polyline points={`0,${height} ${points.join(' ')} ${width},${height}`} className="spark-fill" />
      <polyline points={points.join(' ')} className="spark-line" />
    </svg>
  );
}

export function Stat({ label, value, raw, testid, history }: { label: string; value: string; raw?: number | null; testid: string; history?: number[] }) {
  return (
    <div className="stat">
      <div className="stat-label">{label}</div>
      <div className="stat-value" data-testid={testid} data-value={raw === null || raw === undefined || Number.isNaN(raw) ? undefined : raw}>
        {value}
      </div>
      {history && <Sparkline values={history} />}
    </div>
  );
}

export function Section({ id, title, children, extra }: { id: string; title: string; children: ReactNode; extra?: ReactNode }) {
  return (
    <section className="panel" id={id} data-testid={`section-${id}`}>
      <header className="panel-head">
        <h2>{title}</h2>
        {extra}
      </header>
      {children}
    </section>
  );
}

/** A button that asks inline before it runs `action` (which reports its own outcome). */
export function ConfirmButton({ label, question, action, testid, disabled, danger }: {
  label: string;
  question: string;
  action: () => Promise<void>;
  testid: string;
  disabled?: boolean;
  danger?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (asking) {
    return (
      <span className="confirm" data-testid="confirm">
        <span className="confirm-question">{question}</span>
        <button
          className={danger ? 'danger' : 'primary'}
          data-testid="confirm-yes"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await action();
            } finally {
              setBusy(false);
              setAsking(false);
            }
          }}
        >
          {busy ? 'Working…' : 'Confirm'}
        </button>
        <button data-testid="confirm-no" disabled={busy} onClick={() => setAsking(false)}>
          Cancel
        </button>
      </span>
    );
  }
  return (
    <button className={danger ? 'danger' : undefined} data-testid={testid} disabled={disabled} onClick={() => setAsking(true)}>
      {label}
    </button>
  );
}

/** An action's outcome line: the API's error text, or what happened. */
export interface Outcome {
  ok: boolean;
  text: string;
}

/** An action's failure as shown: the API's error text. */
export function failure(e: unknown): Outcome {
  return { ok: false, text: e instanceof ApiError ? e.message : String(e) };
}

export function OutcomeLine({ outcome, testid }: { outcome: Outcome | null; testid: string }) {
  if (!outcome) return null;
  return (
    <div className={outcome.ok ? 'outcome ok' : 'outcome error'} data-testid={outcome.ok ? `${testid}-ok` : `${testid}-error`} role={outcome.ok ? 'status' : 'alert'}>
      {outcome.text}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}
