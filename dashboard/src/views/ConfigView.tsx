// Config: the config versions and the audit log (who changed what, when); a version's
// difference from the current config, and a rollback to it.

import { useEffect, useState } from 'react';
import type { AuditEntry, Client, ConfigDiff, EntryChange } from '../api';
import { ConfirmButton, Empty, OutcomeLine, Section, failure, type Outcome } from '../components';
import { when } from '../format';
import { latest, usePoll } from '../poll';

/** Audit entries listed. */
const HISTORY_LIMIT = 50;
/** Config versions listed, newest first. */
const VERSIONS_LISTED = 20;

export interface ConfigState {
  /** The audit log, newest first. */
  history: AuditEntry[];
  /** The config version the store holds now. */
  current: number;
}

async function loadConfig(client: Client): Promise<ConfigState> {
  const [history, current] = await Promise.all([
    client<AuditEntry[]>('GET', `/api/v1/config/history?limit=${HISTORY_LIMIT}`),
    client<{ version: number }>('GET', '/api/v1/config'),
  ]);
  return { history, current: current.version };
}

export function useConfig(client: Client) {
  return usePoll(() => loadConfig(client), latest<ConfigState>);
}

/** The audit entry that made config `version`, if the log still holds it. */
function madeBy(history: AuditEntry[], version: number): AuditEntry | undefined {
  return history.find((e) => e.subject === 'config' && e.after_version === version);
}

interface Applied {
  version: number;
  diff: ConfigDiff;
  running_here: boolean;
  node_error?: string;
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function Change({ c }: { c: EntryChange }) {
  const sign = c.change === 'added' ? '+' : c.change === 'removed' ? '−' : '~';
  return (
    <li className={`change ${c.change}`}>
      <span className="mono">
        {sign} {c.kind} {c.key}
      </span>
      {c.fields && c.fields.length > 0 && (
        <ul>
          {c.fields.map((f) => (
            <li key={f.path} className="mono small">
              {f.path}: {f.secret ? 'secret changed' : `${f.before === undefined ? '∅' : show(f.before)} → ${f.after === undefined ? '∅' : show(f.after)}`}
            </li>
          ))}
        </ul>
      )}
    </li>
  );
}

/** The config lists and the field that keys their entries. */
const ENTRY_KEYS: [string, string][] = [
  ['datasource', 'name'],
  ['topics', 'topic'],
  ['routes', 'id'],
];

type Json = Record<string, unknown>;

/**
 * `old` with each entry's version set to the current one of the same key, so the API's diff
 * (which refuses an entry that replaces an older version) compares the contents, as a rollback
 * restores them.
 */
function withCurrentVersions(old: unknown, current: unknown): unknown {
  const copy = structuredClone(old) as Json;
  for (const [list, key] of ENTRY_KEYS) {
    const now = new Map(((current as Json)[list] as Json[] | undefined ?? []).map((e) => [e[key], e.version]));
    for (const entry of (copy[list] as Json[] | undefined) ?? []) {
      if (now.has(entry[key])) entry.version = now.get(entry[key]);
    }
  }
  return copy;
}

/** What restoring `version` would change, and the button that does it. */
function VersionDetail({ client, version, entry, refresh }: { client: Client; version: number; entry?: AuditEntry; refresh: () => void }) {
  const [stored, setStored] = useState<unknown>(null);
  const [preview, setPreview] = useState<{ from_version: number; diff: ConfigDiff } | null>(null);
  const [previewError, setPreviewError] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  useEffect(() => {
    let alive = true;
    setPreview(null);
    setPreviewError(null);
    (async () => {
      try {
        const [got, current] = await Promise.all([
          client<{ version: number; config: unknown }>('GET', `/api/v1/config/versions/${version}`),
          client<{ version: number; config: unknown }>('GET', '/api/v1/config'),
        ]);
        if (alive) setStored(got.config);
        const body = { config: withCurrentVersions(got.config, current.config) };
        const diff = await client<{ from_version: number; diff: ConfigDiff }>('POST', '/api/v1/config/diff', body);
        if (alive) setPreview(diff);
      } catch (e) {
        if (alive) setPreviewError(failure(e).text);
      }
    })();
    return () => {
      alive = false;
    };
  }, [client, version, outcome]);

  const rollback = async () => {
    try {
      const applied = await client<Applied>('POST', '/api/v1/config/rollback', { version });
      const here = applied.running_here ? 'this node runs it' : `this node does not run it: ${applied.node_error ?? 'unknown'}`;
      setOutcome({ ok: true, text: `restored v${version} as v${applied.version}; ${here}` });
    } catch (e) {
      setOutcome(failure(e));
    }
    refresh();
  };

  return (
    <div className="detail" data-testid="config-detail">
      <h3>
        Config v{version}{' '}
        <span className="muted">— {entry ? `${entry.action} by ${entry.who}, ${when(entry.at_ms)}` : 'no audit entry (the initial config)'}</span>
      </h3>
      {previewError && <div className="outcome error">{previewError}</div>}
      {!preview && !previewError && <Empty>Comparing with the current config…</Empty>}
      {preview && (
        <div data-testid="config-diff">
          <p>
            Restoring v{version} over the current v{preview.from_version}{' '}
            {preview.diff.entries.length === 0 && !preview.diff.vars_changed ? 'would change nothing' : 'would change'} (secrets are not compared)
            {preview.diff.entries.length === 0 && !preview.diff.vars_changed ? '.' : ':'}
          </p>
          <ul className="changes">
            {preview.diff.vars_changed && <li className="change changed mono">~ vars</li>}
            {preview.diff.entries.map((c) => (
              <Change key={`${c.kind}/${c.key}`} c={c} />
            ))}
          </ul>
        </div>
      )}
      <ConfirmButton label={`Roll back to v${version}`} question={`Restore config v${version} as a new version?`} testid="config-rollback" danger action={rollback} />
      <OutcomeLine outcome={outcome} testid="config-action" />
      {stored !== null && (
        <details>
          <summary>Config v{version} as stored (secrets shown as ***)</summary>
          <pre className="json">{JSON.stringify(stored, null, 2)}</pre>
        </details>
      )}
    </div>
  );
}

export function ConfigView({ client, config, error, refresh }: { client: Client; config: ConfigState | null; error: string | null; refresh: () => void }) {
  const [selected, setSelected] = useState<number | null>(null);
  const versions = config ? Array.from({ length: Math.min(config.current, VERSIONS_LISTED) }, (_, i) => config.current - i) : [];
  return (
    <Section id="config" title="Config and audit log" extra={error && <span className="load-error">{error}</span>}>
      {!config ? (
        <Empty>Loading the config versions…</Empty>
      ) : (
        <>
          <div className="split">
            <div>
              <h3>Config versions</h3>
              <table className="grid compact" data-testid="versions-table">
                <thead>
                  <tr>
                    <th>Version</th>
                    <th>Made by</th>
                    <th>Who</th>
                    <th>When</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {versions.map((v) => {
                    const entry = madeBy(config.history, v);
                    return (
                      <tr key={v} className={v === selected ? 'selected' : undefined} data-testid={`config-version-${v}`}>
                        <td className="mono">
                          v{v} {v === config.current && <span className="badge inline state-ready">current</span>}
                        </td>
                        <td className="mono small">{entry?.action ?? <span className="muted">—</span>}</td>
                        <td className="small">{entry?.who ?? <span className="muted">—</span>}</td>
                        <td className="small">{entry ? when(entry.at_ms) : <span className="muted">—</span>}</td>
                        <td>
                          <button className="link" onClick={() => setSelected(v)} data-testid={`config-view-${v}`}>
                            compare
                          </button>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
            {selected !== null ? (
              <VersionDetail key={selected} client={client} version={selected} entry={madeBy(config.history, selected)} refresh={refresh} />
            ) : (
              <Empty>Select a config version to compare it with the current config.</Empty>
            )}
          </div>
          <h3 className="spaced">Audit log</h3>
          <table className="grid compact" data-testid="history-table">
            <thead>
              <tr>
                <th className="r">#</th>
                <th>When</th>
                <th>Who</th>
                <th>Action</th>
                <th>Subject</th>
                <th>Version</th>
              </tr>
            </thead>
            <tbody>
              {config.history.map((e) => (
                <tr key={e.seq} data-testid={`history-${e.seq}`}>
                  <td className="r muted">{e.seq}</td>
                  <td className="small">{when(e.at_ms)}</td>
                  <td className="small">{e.who}</td>
                  <td className="mono small">{e.action}</td>
                  <td className="mono small">{e.subject}</td>
                  <td className="mono small">
                    {e.before_version} → {e.after_version}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Section>
  );
}
