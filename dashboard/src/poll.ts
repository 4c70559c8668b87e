// Polling: load every REFRESH_MS, fold each answer into the state (so rates can compare two
// polls), and refresh at once after an action.

import { useCallback, useEffect, useRef, useState } from 'react';
import { TokenRejected } from './api';

/** How often every view reloads, in milliseconds. */
export const REFRESH_MS = 2000;

export interface Polled<S> {
  state: S | null;
  /** The last load's error (the state keeps the last good answer). */
  error: string | null;
  refresh: () => void;
}

/** Calls `load` now and every [`REFRESH_MS`] after the last answer; `fold` makes the state. */
export function usePoll<T, S>(load: () => Promise<T>, fold: (prev: S | null, value: T) => S): Polled<S> {
  const [state, setState] = useState<S | null>(null);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  const foldRef = useRef(fold);
  loadRef.current = load;
  foldRef.current = fold;
  const kick = useRef<() => void>(() => {});

  useEffect(() => {
    let alive = true;
    let running = false;
    let again = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      clearTimeout(timer);
      try {
        const value = await loadRef.current();
        if (!alive) return;
        setState((prev) => foldRef.current(prev, value));
        setError(null);
      } catch (e) {
        // A rejected token has already signed the dashboard out.
        if (alive && !(e instanceof TokenRejected)) setError((e as Error).message);
      } finally {
        running = false;
        if (alive) {
          if (again) {
            again = false;
            void tick();
          } else {
            timer = setTimeout(tick, REFRESH_MS);
          }
        }
      }
    };
    kick.current = () => void tick();
    void tick();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, []);

  const refresh = useCallback(() => kick.current(), []);
  return { state, error, refresh };
}

/** A fold that keeps the newest value only. */
export function latest<T>(_prev: T | null, value: T): T {
  return value;
}
