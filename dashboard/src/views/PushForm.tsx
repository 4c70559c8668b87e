// Push a new mapper version: the module and its sample events go to the API, which compiles
// and smoke-tests the module before it stores anything.

import { useState, type FormEvent } from 'react';
import type { Client, MapperVersion } from '../api';
import { OutcomeLine, failure, type Outcome } from '../components';

interface Pushed {
  version: MapperVersion;
  promoted: number;
  smoke: unknown[];
}

/** A file's bytes as base64. */
function base64Of(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function PushForm({ client, names, done }: { client: Client; names: string[]; done: () => void }) {
  const [name, setName] = useState('');
  const [module, setModule] = useState<File | null>(null);
  const [sample, setSample] = useState<File | null>(null);
  const [notes, setNotes] = useState('');
  const [promote, setPromote] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  const push = async () => {
    if (!module || !sample) return;
    setBusy(true);
    try {
      let sampleJson: unknown;
      try {
        sampleJson = JSON.parse(await sample.text());
      } catch (e) {
        setOutcome({ ok: false, text: `the sample file is not JSON: ${(e as Error).message}` });
        return;
      }
      const body = { module_base64: await base64Of(module), sample: sampleJson, notes, promote };
      const pushed = await client<Pushed>('POST', `/api/v1/mappers/${encodeURIComponent(name)}`, body);
      setOutcome({
        ok: true,
        text: `pushed ${name}@${pushed.version.version} (${pushed.smoke.length} sample event(s) mapped); promoted: v${pushed.promoted}`,
      });
      done();
    } catch (e) {
      setOutcome(failure(e));
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setConfirming(true);
  };

  return (
    <form className="push" onSubmit={submit} data-testid="push-form">
      <h3>Push a version</h3>
      <label>
        Mapper
        <input list="mapper-names" required pattern="[A-Za-z0-9_\-]{1,64}" value={name} onChange={(e) => setName(e.target.value)} data-testid="push-name" />
        <datalist id="mapper-names">
          {names.map((n) => (
            <option key={n} value={n} />
          ))}
        </datalist>
      </label>
      <label>
        Module (.wasm)
        <input type="file" accept=".wasm,application/wasm" required onChange={(e) => setModule(e.target.files?.[0] ?? null)} data-testid="push-module" />
      </label>
      <label title="The API runs the module on these events before it stores it">
        Sample events (.json)
        <input type="file" accept=".json,application/json" required onChange={(e) => setSample(e.target.files?.[0] ?? null)} data-testid="push-sample" />
      </label>
      <label>
        Notes
        <input value={notes} onChange={(e) => setNotes(e.target.value)} data-testid="push-notes" />
      </label>
      <label className="check">
        <input type="checkbox" checked={promote} onChange={(e) => setPromote(e.target.checked)} data-testid="push-promote" />
        promote
      </label>
      {confirming ? (
        <span className="confirm" data-testid="confirm">
          <span className="confirm-question">
            Push {module?.name} as a new version of {name}
            {promote ? ' and promote it' : ''}?
          </span>
          <button type="button" className="primary" disabled={busy} onClick={push} data-testid="confirm-yes">
            {busy ? 'Pushing…' : 'Confirm'}
          </button>
          <button type="button" disabled={busy} onClick={() => setConfirming(false)} data-testid="confirm-no">
            Cancel
          </button>
        </span>
      ) : (
        <button type="submit" data-testid="push-submit">
          Push
        </button>
      )}
      <OutcomeLine outcome={outcome} testid="push-result" />
    </form>
  );
}
