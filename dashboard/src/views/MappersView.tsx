// Mappers: every version of every mapper, which one is promoted, its calls, errors and p99 on
// this node; promote, rollback and push through the API.

import { Fragment, useState } from 'react';
import type { Client, MapperMeta, MapperSummary } from '../api';
import { ConfirmButton, Empty, OutcomeLine, Section, failure, type Outcome } from '../components';
import { bytes, num, perSec, seconds, when } from '../format';
import { histogramQuantiles, rate, total, type MetricsWindow } from '../metrics';
import { latest, usePoll } from '../poll';
import { PushForm } from './PushForm';

/** Every mapper's versions, by name. */
async function loadMappers(client: Client): Promise<MapperMeta[]> {
  const list = await client<MapperSummary[]>('GET', '/api/v1/mappers');
  return Promise.all(list.map((m) => client<MapperMeta>('GET', `/api/v1/mappers/${encodeURIComponent(m.name)}`)));
}

export function useMappers(client: Client) {
  return usePoll(() => loadMappers(client), latest<MapperMeta[]>);
}

function VersionStats({ w, label }: { w: MetricsWindow | null; label: string }) {
  if (!w) return <td colSpan={4} className="muted">—</td>;
  const calls = total(w.cur, 'wsgate_mapper_calls_total', { mapper: label });
  const errors = total(w.cur, 'wsgate_mapper_errors_total', { mapper: label });
  const q = histogramQuantiles(w, 'wsgate_mapper_duration_seconds', { mapper: label });
  return (
    <>
      <td className="r" data-testid="mapper-calls">{num(calls)}</td>
      <td className="r">{perSec(rate(w, 'wsgate_mapper_calls_total', { mapper: label }))}</td>
      <td className={errors ? 'r hot' : 'r'} data-testid="mapper-errors" title={errorKinds(w, label)}>
        {num(errors)}
      </td>
      <td className="r">{q && q.count > 0 ? seconds(q.p99) : '—'}</td>
    </>
  );
}

/** `kind: count` of a version's errors, for the errors cell's tooltip. */
function errorKinds(w: MetricsWindow, label: string): string {
  const fam = w.cur.families.find((f) => f.name === 'wsgate_mapper_errors_total');
  return (fam?.metrics ?? [])
    .filter((m) => m.labels.mapper === label)
    .map((m) => `${m.labels.kind}: ${m.value ?? 0}`)
    .join(', ');
}

export function MappersView({ client, mappers, error, metrics, refresh }: {
  client: Client;
  mappers: MapperMeta[] | null;
  error: string | null;
  metrics: MetricsWindow | null;
  refresh: () => void;
}) {
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  const act = async (name: string, verb: string, path: string, body?: unknown) => {
    try {
      const meta = await client<MapperMeta>('POST', `/api/v1/mappers/${encodeURIComponent(name)}/${path}`, body);
      setOutcome({ ok: true, text: `${name}: ${verb}; promoted is now v${meta.promoted}` });
    } catch (e) {
      setOutcome(failure(e));
    }
    refresh();
  };

  return (
    <Section id="mappers" title="Mappers" extra={error && <span className="load-error">{error}</span>}>
      <OutcomeLine outcome={outcome} testid="mapper-action" />
      {!mappers ? (
        <Empty>Loading mappers…</Empty>
      ) : mappers.length === 0 ? (
        <Empty>no mapper in the registry</Empty>
      ) : (
        <table className="grid" data-testid="mappers-table">
          <thead>
            <tr>
              <th>Mapper</th>
              <th>Version</th>
              <th>Module</th>
              <th>Uploaded</th>
              <th>Notes</th>
              <th className="r">Calls</th>
              <th className="r">Calls/s</th>
              <th className="r">Errors</th>
              <th className="r">p99</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {mappers.map((m) => (
              <Fragment key={m.name}>
                {[...m.versions].reverse().map((v, i) => {
                  const promoted = v.version === m.promoted;
                  return (
                    <tr
                      key={v.version}
                      className={promoted ? 'promoted' : undefined}
                      data-testid={`mapper-${m.name}-v${v.version}`}
                      data-promoted={promoted ? 'true' : 'false'}
                    >
                      {i === 0 && (
                        <td rowSpan={m.versions.length} className="mapper-name" data-testid={`mapper-${m.name}`}>
                          <div className="mono strong">{m.name}</div>
                          <div className="muted small">
                            promoted <span data-testid={`mapper-promoted-${m.name}`} data-value={m.promoted}>v{m.promoted}</span> of {m.versions.length}
                          </div>
                          <ConfirmButton
                            label="Rollback"
                            question={`Roll ${m.name} back from v${m.promoted} to the version before?`}
                            testid={`rollback-${m.name}`}
                            danger
                            action={() => act(m.name, 'rolled back', 'rollback')}
                          />
                        </td>
                      )}
                      <td className="mono">
                        v{v.version} {promoted && <span className="badge inline state-ready">promoted</span>}
                      </td>
                      <td className="mono small" title={v.hash}>
                        {v.hash.slice(0, 12)} · {bytes(v.size)}
                      </td>
                      <td className="small">
                        {v.uploader}
                        <div className="muted">{when(v.uploaded_at_ms)}</div>
                      </td>
                      <td className="small notes">{v.notes || <span className="muted">—</span>}</td>
                      <VersionStats w={metrics} label={`${m.name}@${v.version}`} />
                      <td>
                        {!promoted && (
                          <ConfirmButton
                            label="Promote"
                            question={`Promote ${m.name} v${v.version}?`}
                            testid={`promote-${m.name}-${v.version}`}
                            action={() => act(m.name, `promoted v${v.version}`, 'promote', { version: v.version })}
                          />
                        )}
                      </td>
                    </tr>
                  );
                })}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
      <PushForm client={client} names={(mappers ?? []).map((m) => m.name)} done={refresh} />
    </Section>
  );
}
