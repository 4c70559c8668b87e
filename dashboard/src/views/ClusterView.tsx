// Cluster: every live node with its state, ownership, config version, connections and delivered
// messages per second (from two polls of the same node's counters).

import type { Client, ClusterDoc, ClusterNode } from '../api';
import { Empty, Section, Sparkline, Stat, pushHistory } from '../components';
import { age, num, perSec } from '../format';
import { usePoll } from '../poll';

interface NodeTrack {
  /** The counters of the last new reading of this node. */
  out: number;
  at_ms: number;
  /** Delivered msg/s between its last two readings. */
  rate: number | null;
  history: number[];
}

export interface ClusterState {
  doc: ClusterDoc;
  nodes: Record<string, NodeTrack>;
  total: number | null;
  totalHistory: number[];
  polledAt: number;
}

/** Folds a new cluster answer into the per-node rates. */
export function foldCluster(prev: ClusterState | null, doc: ClusterDoc): ClusterState {
  const nodes: Record<string, NodeTrack> = {};
  for (const n of doc.nodes) {
    const before = prev?.nodes[n.node_id];
    if (!before || n.at_ms < before.at_ms) {
      nodes[n.node_id] = { out: n.messages_out_total, at_ms: n.at_ms, rate: null, history: [] };
    } else if (n.at_ms === before.at_ms) {
      // The node has not read its counters again since: keep the last rate.
      nodes[n.node_id] = before;
    } else {
      const delta = n.messages_out_total >= before.out ? n.messages_out_total - before.out : n.messages_out_total;
      const rate = delta / ((n.at_ms - before.at_ms) / 1000);
      nodes[n.node_id] = { out: n.messages_out_total, at_ms: n.at_ms, rate, history: pushHistory(before.history, rate) };
    }
  }
  const known = doc.nodes.map((n) => nodes[n.node_id].rate).filter((r): r is number => r !== null);
  const total = known.length ? known.reduce((a, b) => a + b, 0) : null;
  return { doc, nodes, total, totalHistory: pushHistory(prev?.totalHistory ?? [], total), polledAt: Date.now() };
}

export function useCluster(client: Client) {
  return usePoll(() => client<ClusterDoc>('GET', '/api/v1/cluster'), foldCluster);
}

function StateBadge({ state }: { state: ClusterNode['state'] }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

export function ClusterView({ cluster, error }: { cluster: ClusterState | null; error: string | null }) {
  const nodes = cluster ? [...cluster.doc.nodes].sort((a, b) => a.node_id.localeCompare(b.node_id)) : [];
  const connections = nodes.reduce((acc, n) => acc + n.connections, 0);
  return (
    <Section id="cluster" title="Cluster" extra={error && <span className="load-error" data-testid="cluster-load-error">{error}</span>}>
      {!cluster ? (
        <Empty>Loading the cluster…</Empty>
      ) : (
        <>
          <div className="stats">
            <Stat label="Nodes" value={num(nodes.length)} raw={nodes.length} testid="cluster-nodes" />
            <Stat label="Connections" value={num(connections)} raw={connections} testid="cluster-connections" />
            <Stat label="Delivered msg/s" value={perSec(cluster.total)} raw={cluster.total} testid="cluster-msg-rate" history={cluster.totalHistory} />
          </div>
          <table className="grid" data-testid="cluster-table">
            <thead>
              <tr>
                <th>Node</th>
                <th>State</th>
                <th>Owns</th>
                <th className="r">Config</th>
                <th className="r">Revision</th>
                <th className="r">Connections</th>
                <th className="r">Delivered msg/s</th>
                <th />
                <th className="r">Stats age</th>
              </tr>
            </thead>
            <tbody>
              {nodes.map((n) => {
                const track = cluster.nodes[n.node_id];
                return (
                  <tr key={n.node_id} data-testid={`cluster-row-${n.node_id}`}>
                    <td data-testid="node-id" className="mono">
                      {n.node_id}
                      {n.self && <span className="badge self">this node</span>}
                    </td>
                    <td data-testid="node-state">
                      <StateBadge state={n.state} />
                    </td>
                    <td className="mono">{n.owned.length ? n.owned.join(', ') : <span className="muted">—</span>}</td>
                    <td className="r mono">v{n.config_version}</td>
                    <td className="r mono">{n.revision}</td>
                    <td className="r">{num(n.connections)}</td>
                    <td className="r" data-testid="node-rate" data-value={track.rate ?? undefined}>
                      {perSec(track.rate)}
                    </td>
                    <td>
                      <Sparkline values={track.history} width={90} height={18} />
                    </td>
                    <td className="r muted">{age(n.at_ms, cluster.polledAt)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
    </Section>
  );
}

