// This node: throughput, drops, closes, flow control, refusals, subscriptions per stream,
// delivery latency per kind and datasource, and its sources.

import { useState } from 'react';
import type { Client, MetricsDoc } from '../api';
import { Empty, Section, Stat, pushHistory } from '../components';
import { num, perSec, seconds } from '../format';
import { byLabel, histogramQuantiles, rate, samples, total, type MetricsWindow } from '../metrics';
import { usePoll } from '../poll';

export interface MetricsState extends MetricsWindow {
  outHistory: number[];
  inHistory: number[];
}

/** Keeps the newest metrics answer and the one before it. */
export function foldMetrics(prev: MetricsState | null, doc: MetricsDoc): MetricsState {
  if (prev && doc.at_ms === prev.cur.at_ms) return prev;
  const w: MetricsWindow = { cur: doc, prev: prev && prev.cur.node_id === doc.node_id ? prev.cur : null };
  return {
    ...w,
    outHistory: pushHistory(prev?.outHistory ?? [], rate(w, 'wsgate_messages_out_total')),
    inHistory: pushHistory(prev?.inHistory ?? [], rate(w, 'wsgate_messages_in_total')),
  };
}

export function useMetrics(client: Client) {
  return usePoll(() => client<MetricsDoc>('GET', '/api/v1/metrics'), foldMetrics);
}

/** Streams shown in the subscriptions table. */
const TOP_STREAMS = 15;

function CountTable({ title, rows, testid, unit = 'label' }: { title: string; rows: ReturnType<typeof byLabel>; testid: string; unit?: string }) {
  return (
    <div className="subpanel" data-testid={testid}>
      <h3>{title}</h3>
      {rows.length === 0 ? (
        <Empty>none</Empty>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th>{unit}</th>
              <th className="r">total</th>
              <th className="r">/s</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.label}>
                <td className="mono">{r.label || '—'}</td>
                <td className="r">{num(r.value)}</td>
                <td className={r.rate ? 'r hot' : 'r'}>{perSec(r.rate)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Health({ w }: { w: MetricsWindow }) {
  const flag = (name: string) => total(w.cur, name);
  const pills: [string, number | undefined, boolean][] = [
    ['ready', flag('wsgate_ready'), false],
    ['draining', flag('wsgate_draining'), true],
    ['bus', flag('wsgate_bus_up'), false],
    ['config store', flag('wsgate_config_store_up'), false],
  ];
  return (
    <span className="pills">
      {pills
        .filter(([, v]) => v !== undefined)
        .map(([label, v, inverted]) => {
          const good = inverted ? v === 0 : v === 1;
          return (
            <span key={label} className={good ? 'pill good' : 'pill bad'}>
              {label}: {inverted ? (v ? 'yes' : 'no') : v ? 'up' : 'down'}
            </span>
          );
        })}
    </span>
  );
}

function Subscriptions({ w }: { w: MetricsWindow }) {
  const [filter, setFilter] = useState('');
  const all = samples(w.cur, 'wsgate_subscriptions')
    .map((m) => ({ stream: m.labels.stream ?? '', count: m.value ?? 0 }))
    .filter((s) => s.count > 0);
  const matching = all.filter((s) => s.stream.toLowerCase().includes(filter.trim().toLowerCase()));
  const shown = matching.sort((a, b) => b.count - a.count || a.stream.localeCompare(b.stream)).slice(0, TOP_STREAMS);
  return (
    <div className="subpanel wide" data-testid="subscriptions">
      <h3>
        Subscribers per stream <span className="muted">(top {TOP_STREAMS} of {matching.length})</span>
      </h3>
      <input className="filter" placeholder="filter streams" value={filter} onChange={(e) => setFilter(e.target.value)} data-testid="subscriptions-filter" />
      {shown.length === 0 ? (
        <Empty>no subscriber{filter ? ' matches' : ''}</Empty>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th>stream</th>
              <th className="r">subscribers</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((s) => (
              <tr key={s.stream} data-testid={`subscription-${s.stream}`}>
                <td className="mono">{s.stream}</td>
                <td className="r">{num(s.count)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Latency({ w }: { w: MetricsWindow }) {
  const series = samples(w.cur, 'wsgate_delivery_latency_seconds')
    .filter((m) => m.buckets)
    .map((m) => ({ labels: m.labels, q: histogramQuantiles(w, 'wsgate_delivery_latency_seconds', m.labels) }))
    .filter((s) => s.q && s.q.count > 0)
    .sort((a, b) => (a.labels.kind ?? '').localeCompare(b.labels.kind ?? '') || (a.labels.datasource ?? '').localeCompare(b.labels.datasource ?? ''));
  return (
    <div className="subpanel wide" data-testid="latency">
      <h3>
        Delivery latency <span className="muted">(bus publish to socket write)</span>
      </h3>
      {series.length === 0 ? (
        <Empty>nothing delivered yet</Empty>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th>kind</th>
              <th>datasource</th>
              <th className="r">p50</th>
              <th className="r">p99</th>
              <th className="r">writes</th>
              <th>over</th>
            </tr>
          </thead>
          <tbody>
            {series.map(({ labels, q }) => (
              <tr key={`${labels.kind}/${labels.datasource}`} data-testid={`latency-${labels.kind ?? ''}-${labels.datasource ?? ''}`}>
                <td className="mono">{labels.kind ?? '—'}</td>
                <td className="mono">{labels.datasource ?? '—'}</td>
                <td className="r" data-testid="latency-p50">{seconds(q!.p50)}</td>
                <td className="r" data-testid="latency-p99">{seconds(q!.p99)}</td>
                <td className="r">{num(q!.count)}</td>
                <td className="muted">{q!.windowed ? 'last poll' : 'since start'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Sources({ w }: { w: MetricsWindow }) {
  const names = new Set<string>();
  for (const name of ['wsgate_source_up', 'wsgate_source_lag', 'wsgate_source_events_total', 'wsgate_source_errors_total']) {
    for (const m of samples(w.cur, name)) if (m.labels.datasource) names.add(m.labels.datasource);
  }
  const rows = [...names].sort();
  return (
    <div className="subpanel wide" data-testid="sources">
      <h3>Sources on this node</h3>
      {rows.length === 0 ? (
        <Empty>this node consumes no datasource</Empty>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th>datasource</th>
              <th>up</th>
              <th className="r">lag</th>
              <th className="r">events/s</th>
              <th className="r">errors</th>
              <th className="r">errors/s</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((ds) => {
              const match = { datasource: ds };
              const up = total(w.cur, 'wsgate_source_up', match);
              const errors = total(w.cur, 'wsgate_source_errors_total', match);
              const errorRate = rate(w, 'wsgate_source_errors_total', match);
              return (
                <tr key={ds} data-testid={`source-${ds}`}>
                  <td className="mono">{ds}</td>
                  <td>{up === undefined ? '—' : <span className={up ? 'badge state-ready' : 'badge state-unready'}>{up ? 'up' : 'down'}</span>}</td>
                  <td className="r">{num(total(w.cur, 'wsgate_source_lag', match))}</td>
                  <td className="r">{perSec(rate(w, 'wsgate_source_events_total', match))}</td>
                  <td className="r">{num(errors)}</td>
                  <td className={errorRate ? 'r hot' : 'r'}>{perSec(errorRate)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function NodeView({ metrics, error }: { metrics: MetricsState | null; error: string | null }) {
  const title = metrics ? `This node — ${metrics.cur.node_id}` : 'This node';
  return (
    <Section
      id="node"
      title={title}
      extra={
        <>
          {metrics && <Health w={metrics} />}
          {error && <span className="load-error">{error}</span>}
        </>
      }
    >
      {!metrics ? (
        <Empty>Loading metrics…</Empty>
      ) : (
        <>
          <div className="stats">
            <Stat label="Connections" value={num(total(metrics.cur, 'wsgate_connections'))} raw={total(metrics.cur, 'wsgate_connections')} testid="node-connections" />
            <Stat label="Delivered msg/s" value={perSec(rate(metrics, 'wsgate_messages_out_total'))} raw={rate(metrics, 'wsgate_messages_out_total')} testid="node-msg-out-rate" history={metrics.outHistory} />
            <Stat label="Messages in/s" value={perSec(rate(metrics, 'wsgate_messages_in_total'))} raw={rate(metrics, 'wsgate_messages_in_total')} testid="node-msg-in-rate" history={metrics.inHistory} />
            <Stat label="Config version" value={`v${num(total(metrics.cur, 'wsgate_config_version'))}`} testid="node-config-version" />
          </div>
          <div className="subgrid">
            <CountTable title="Drops by reason" rows={byLabel(metrics, 'wsgate_messages_dropped_total', 'reason')} testid="drops" unit="reason" />
            <CountTable title="Closes by code" rows={byLabel(metrics, 'wsgate_closes_total', 'code')} testid="closes" unit="code" />
            <CountTable title="Slow-consumer actions" rows={byLabel(metrics, 'wsgate_slow_consumer_total', 'reason')} testid="slow-consumer" unit="reason" />
            <CountTable title="Connections refused" rows={byLabel(metrics, 'wsgate_connections_refused_total', 'reason')} testid="refused" unit="reason" />
          </div>
          <div className="subgrid two">
            <Subscriptions w={metrics} />
            <Sources w={metrics} />
          </div>
          <Latency w={metrics} />
        </>
      )}
    </Section>
  );
}
