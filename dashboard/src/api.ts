// The operator API client: every call carries the bearer token; a refused token signs out.

/** Where the browser keeps the token: this tab's sessionStorage only. */
export const TOKEN_KEY = 'wsgate.adminToken';
/** Where it keeps the operator's name, which the audit log records for each change. */
export const OPERATOR_KEY = 'wsgate.operator';

/** An API error: HTTP status (0 when the node was not reached) and the API's `error` text. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The token was refused (401) or the API is disabled (503): the dashboard signs out. */
export class TokenRejected extends ApiError {}

/** Whether a response means the token cannot be used. */
function rejectsToken(status: number, message: string): boolean {
  return status === 401 || (status === 503 && /disabled/i.test(message));
}

/** One API call with `token` (and the operator's name, if any): the parsed JSON answer, or an [`ApiError`]. */
export async function request<T>(token: string, method: string, path: string, body?: unknown, operator?: string): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  // A header value must be printable ASCII; the API records `operator` otherwise.
  if (operator && /^[\x20-\x7e]+$/.test(operator)) headers['X-Wsgate-Operator'] = operator;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the node: ${(e as Error).message}`);
  }
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = (parsed as { error?: unknown } | null)?.error;
    const message = typeof error === 'string' ? error : `HTTP ${response.status} ${response.statusText}`;
    if (rejectsToken(response.status, message)) throw new TokenRejected(response.status, message);
    throw new ApiError(response.status, message);
  }
  return parsed as T;
}

/** A client bound to an accepted token; `onRejected` runs when the API stops accepting it. */
export type Client = <T>(method: string, path: string, body?: unknown) => Promise<T>;

export function makeClient(token: string, operator: string, onRejected: (message: string) => void): Client {
  return async <T,>(method: string, path: string, body?: unknown) => {
    try {
      return await request<T>(token, method, path, body, operator);
    } catch (e) {
      if (e instanceof TokenRejected) onRejected(e.message);
      throw e;
    }
  };
}

// The API's shapes, as far as the dashboard reads them.

export type NodeState = 'ready' | 'unready' | 'draining' | 'starting';

export interface ClusterNode {
  node_id: string;
  self: boolean;
  state: NodeState;
  owned: string[];
  config_version: number;
  revision: number;
  connections: number;
  messages_out_total: number;
  messages_in_total: number;
  at_ms: number;
}

export interface ClusterDoc {
  node_id: string;
  nodes: ClusterNode[];
}

export interface MetricSample {
  labels: Record<string, string>;
  value?: number;
  count?: number;
  sum?: number;
  buckets?: [number, number][];
}

export interface MetricFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'untyped';
  help: string;
  metrics: MetricSample[];
}

export interface MetricsDoc {
  node_id: string;
  at_ms: number;
  families: MetricFamily[];
}

export interface MapperSummary {
  name: string;
  promoted: number;
  versions: number;
  hash: string | null;
  uploader: string | null;
  uploaded_at_ms: number | null;
}

export interface MapperVersion {
  version: number;
  hash: string;
  size: number;
  uploader: string;
  uploaded_at_ms: number;
  world: string;
  notes: string;
}

export interface MapperMeta {
  name: string;
  versions: MapperVersion[];
  promoted: number;
  revision: number;
}

export interface AuditEntry {
  seq: number;
  at_ms: number;
  who: string;
  action: string;
  subject: string;
  before_version: number;
  after_version: number;
  before: unknown;
  after: unknown;
}

export interface FieldChange {
  path: string;
  change: string;
  secret?: boolean;
  before?: unknown;
  after?: unknown;
}

export interface EntryChange {
  kind: string;
  key: string;
  change: string;
  from_version: number;
  to_version: number;
  fields?: FieldChange[];
}

export interface ConfigDiff {
  entries: EntryChange[];
  vars_changed: boolean;
}
