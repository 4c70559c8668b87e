// The dashboard's gate: nothing but the token form until the API accepts a token; a token the
// API stops accepting (401, or 503 when the API is disabled) signs out with the API's reason.

import { useCallback, useEffect, useMemo, useState, type FormEvent } from 'react';
import { OPERATOR_KEY, TOKEN_KEY, makeClient, request, type Client } from './api';
import { REFRESH_MS } from './poll';
import { ClusterView, useCluster } from './views/ClusterView';
import { ConfigView, useConfig } from './views/ConfigView';
import { MappersView, useMappers } from './views/MappersView';
import { NodeView, useMetrics } from './views/NodeView';

/** The call that checks a token before anything is shown. */
const CHECK_PATH = '/api/v1/status';

function TokenForm({ error, checking, submit }: { error: string | null; checking: boolean; submit: (token: string, operator: string) => void }) {
  const [token, setToken] = useState('');
  const [operator, setOperator] = useState(() => sessionStorage.getItem(OPERATOR_KEY) ?? '');
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    if (token) submit(token, operator.trim());
  };
  return (
    <main className="gate">
      <form className="token-form" onSubmit={onSubmit} data-testid="token-form">
        <h1>wsgate</h1>
        <p className="muted">Operator dashboard. Enter the node's admin token (--admin-token or WSGATE_ADMIN_TOKEN).</p>
        <input
          type="password"
          autoFocus
          autoComplete="current-password"
          placeholder="admin token"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          data-testid="token-input"
        />
        <input
          placeholder="your name, for the audit log (optional)"
          maxLength={100}
          value={operator}
          onChange={(e) => setOperator(e.target.value)}
          data-testid="operator-input"
        />
        <button type="submit" className="primary" disabled={checking || !token} data-testid="token-submit">
          {checking ? 'Checking…' : 'Sign in'}
        </button>
        {error && (
          <div className="outcome error" role="alert" data-testid="auth-error">
            {error}
          </div>
        )}
      </form>
    </main>
  );
}

function Dashboard({ client, signOut }: { client: Client; signOut: () => void }) {
  const cluster = useCluster(client);
  const metrics = useMetrics(client);
  const mappers = useMappers(client);
  const config = useConfig(client);
  const refreshMappers = useCallback(() => {
    mappers.refresh();
    config.refresh();
  }, [mappers, config]);
  const selfId = cluster.state?.doc.node_id ?? metrics.state?.cur.node_id;
  return (
    <div className="app" data-testid="dashboard">
      <header className="top">
        <h1>wsgate</h1>
        {selfId && (
          <span className="muted">
            admin API of <span className="mono">{selfId}</span>
          </span>
        )}
        <nav>
          <a href="#cluster">Cluster</a>
          <a href="#node">This node</a>
          <a href="#mappers">Mappers</a>
          <a href="#config">Config</a>
        </nav>
        <span className="muted small">refresh {REFRESH_MS / 1000} s</span>
        <button onClick={signOut} data-testid="sign-out">
          Sign out
        </button>
      </header>
      <ClusterView cluster={cluster.state} error={cluster.error} />
      <NodeView metrics={metrics.state} error={metrics.error} />
      <MappersView client={client} mappers={mappers.state} error={mappers.error} metrics={metrics.state} refresh={refreshMappers} />
      <ConfigView client={client} config={config.state} error={config.error} refresh={config.refresh} />
    </div>
  );
}

export function App() {
  const [token, setToken] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(() => sessionStorage.getItem(TOKEN_KEY) !== null);

  const rejected = useCallback((message: string) => {
    sessionStorage.removeItem(TOKEN_KEY);
    setToken(null);
    setError(message);
  }, []);

  const check = useCallback(async (candidate: string, operator: string) => {
    setChecking(true);
    try {
      await request(candidate, 'GET', CHECK_PATH);
      sessionStorage.setItem(TOKEN_KEY, candidate);
      if (operator) sessionStorage.setItem(OPERATOR_KEY, operator);
      else sessionStorage.removeItem(OPERATOR_KEY);
      setError(null);
      setToken(candidate);
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      setError((e as Error).message);
    } finally {
      setChecking(false);
    }
  }, []);

  useEffect(() => {
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (stored) void check(stored, sessionStorage.getItem(OPERATOR_KEY) ?? '');
  }, [check]);

  const client = useMemo(() => (token ? makeClient(token, sessionStorage.getItem(OPERATOR_KEY) ?? '', rejected) : null), [token, rejected]);
  const signOut = useCallback(() => {
    sessionStorage.removeItem(TOKEN_KEY);
    setToken(null);
    setError(null);
  }, []);

  if (!client) return <TokenForm error={error} checking={checking} submit={check} />;
  return <Dashboard client={client} signOut={signOut} />;
}
