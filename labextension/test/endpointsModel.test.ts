// @vitest-environment jsdom
import { Signal } from '@lumino/signaling';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  EndpointsModel,
  IBusEmission,
  IEndpointsClient
} from '../src/endpointsModel';
import { EndpointAction, GATEWAY_EVENT_SCHEMA, IEndpoint } from '../src/tokens';

import { endpoint } from './fakes';

/** A client whose listings are whatever `endpoints` holds when `list()` is called. */
class FakeClient implements IEndpointsClient {
  endpoints: IEndpoint[] = [endpoint('a')];
  listCalls = 0;
  acts: [string, EndpointAction][] = [];
  /** When set, `list()` waits for the test to release it. */
  gate: (() => Promise<void>) | null = null;

  async list(): Promise<IEndpoint[]> {
    this.listCalls += 1;
    const snapshot = this.endpoints.map(e => ({ ...e }));
    if (this.gate) {
      await this.gate();
    }
    return snapshot;
  }

  async act(name: string, action: EndpointAction): Promise<void> {
    this.acts.push([name, action]);
    this.endpoints = this.endpoints.map(e =>
      e.name === name
        ? { ...e, state: action === 'stop' ? 'stopped' : 'running' }
        : e
    );
  }

  async remove(name: string): Promise<void> {
    this.endpoints = this.endpoints.filter(e => e.name !== name);
  }
}

class FakeBus {
  readonly stream = new Signal<unknown, IBusEmission>(this);
  emit(type: string, fields: Record<string, unknown> = {}): void {
    this.stream.emit({ schema_id: GATEWAY_EVENT_SCHEMA, type, ...fields });
  }
}

const flush = async () => {
  for (let i = 0; i < 5; i++) {
    await Promise.resolve();
  }
};

describe('EndpointsModel', () => {
  beforeEach(() => {
    vi.useFakeTimers({
      toFake: [
        'setTimeout',
        'clearTimeout',
        'setInterval',
        'clearInterval',
        'requestAnimationFrame',
        'cancelAnimationFrame',
        'Date'
      ]
    });
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('a refresh during one in flight runs exactly one follow-up that sees the change', async () => {
    const client = new FakeClient();
    const model = new EndpointsModel({ client, pollInterval: 60000 });
    await vi.advanceTimersByTimeAsync(10); // the poll's first tick
    const before = client.listCalls;
    let release!: () => void;
    client.gate = () => new Promise<void>(resolve => (release = resolve));
    const first = model.refresh();
    // The state changes on the server after the first listing was taken.
    client.endpoints = [endpoint('a', 'stopped')];
    const second = model.refresh();
    const third = model.refresh();
    client.gate = null;
    release();
    await Promise.all([first, second, third]);
    expect(client.listCalls - before).toBe(2);
    expect(model.views.get('a')?.state).toBe('stopped');
    model.dispose();
  });

  it('run() resolves with state fetched after the action', async () => {
    const client = new FakeClient();
    const model = new EndpointsModel({ client, pollInterval: 60000 });
    await vi.advanceTimersByTimeAsync(10);
    await model.run('a', 'stop');
    expect(client.acts).toEqual([['a', 'stop']]);
    expect(model.views.get('a')?.state).toBe('stopped');
    model.dispose();
  });

  it('emits removed and changed, and deleting around a delete', async () => {
    const client = new FakeClient();
    client.endpoints = [endpoint('a'), endpoint('b')];
    const model = new EndpointsModel({ client, pollInterval: 60000 });
    await vi.advanceTimersByTimeAsync(10);
    const removed: string[] = [];
    const phases: string[] = [];
    const orders: string[][] = [];
    model.removed.connect((_, name) => removed.push(name));
    model.deleting.connect((_, d) => phases.push(`${d.endpoint}:${d.phase}`));
    model.changed.connect((_, diff) => orders.push(diff.order));
    await model.remove('a');
    expect(phases).toEqual(['a:pending', 'a:gone']);
    expect(removed).toEqual(['a']);
    expect(orders.at(-1)).toEqual(['b']);
    model.dispose();
  });

  it('polls while no events flow, stops while they do, and polls again when they stop', async () => {
    const client = new FakeClient();
    const bus = new FakeBus();
    const model = new EndpointsModel({
      client,
      events: bus,
      pollInterval: 100,
      eventsTimeout: 5000
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(client.listCalls).toBeGreaterThanOrEqual(8);
    expect(model.status).toBe('polling');

    bus.emit('hello', { seq: 7 });
    await flush();
    const afterHello = client.listCalls; // one resync for the (re)connect
    expect(model.live).toBe(true);
    expect(model.status).toBe('live');
    for (let i = 0; i < 4; i++) {
      await vi.advanceTimersByTimeAsync(1000);
      bus.emit('heartbeat');
    }
    expect(client.listCalls).toBe(afterHello);

    // A change arrives as an event: one debounced listing, still no polling.
    bus.emit('state', { seq: 8, endpoint: 'a', state: 'stopped' });
    await vi.advanceTimersByTimeAsync(200);
    expect(client.listCalls).toBe(afterHello + 1);

    // Silence longer than eventsTimeout: back to polling.
    await vi.advanceTimersByTimeAsync(5000);
    expect(model.live).toBe(false);
    const whenStale = client.listCalls;
    await vi.advanceTimersByTimeAsync(1000);
    expect(client.listCalls - whenStale).toBeGreaterThanOrEqual(8);
    model.dispose();
  });

  it('stops polling while nobody looks, and lists at once when the panel shows again', async () => {
    const client = new FakeClient();
    const model = new EndpointsModel({ client, pollInterval: 100 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(client.listCalls).toBeGreaterThanOrEqual(8);

    model.active = false; // the panel is hidden
    await vi.advanceTimersByTimeAsync(200);
    const hidden = client.listCalls;
    await vi.advanceTimersByTimeAsync(5000);
    expect(client.listCalls).toBe(hidden);

    model.active = true; // shown again: fresh state now, then polling resumes
    await vi.advanceTimersByTimeAsync(10);
    expect(client.listCalls).toBe(hidden + 1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(client.listCalls - hidden).toBeGreaterThanOrEqual(8);
    model.dispose();
  });

  it('resyncs when a sequence number is skipped and polls at once on disconnect', async () => {
    const client = new FakeClient();
    const bus = new FakeBus();
    const model = new EndpointsModel({
      client,
      events: bus,
      pollInterval: 60000
    });
    await vi.advanceTimersByTimeAsync(10);
    bus.emit('hello', { seq: 1 });
    await flush();
    const start = client.listCalls;
    bus.emit('build', {
      seq: 2,
      endpoint: 'a',
      phase: 'progress',
      message: 'Compiling serde'
    });
    await vi.advanceTimersByTimeAsync(200);
    expect(client.listCalls).toBe(start); // progress lines need no listing
    bus.emit('state', { seq: 9, endpoint: 'a', state: 'running' });
    await flush();
    expect(client.listCalls).toBe(start + 1); // the gap, at once
    bus.emit('disconnected');
    await vi.advanceTimersByTimeAsync(50);
    expect(model.live).toBe(false);
    expect(client.listCalls).toBe(start + 2);
    model.dispose();
  });

  it('resyncs when a heartbeat says events were missed', async () => {
    const client = new FakeClient();
    const bus = new FakeBus();
    const model = new EndpointsModel({
      client,
      events: bus,
      pollInterval: 60000
    });
    await vi.advanceTimersByTimeAsync(10);
    bus.emit('hello', { seq: 4 });
    await flush();
    const start = client.listCalls;
    bus.emit('heartbeat', { seq: 4 });
    await flush();
    expect(client.listCalls).toBe(start);
    bus.emit('heartbeat', { seq: 6 }); // events 5 and 6 never arrived
    await flush();
    expect(client.listCalls).toBe(start + 1);
    model.dispose();
  });

  it('reports build progress per endpoint', async () => {
    const bus = new FakeBus();
    const model = new EndpointsModel({
      client: new FakeClient(),
      events: bus,
      pollInterval: 60000
    });
    const lines: string[] = [];
    model.buildProgress.connect((_, p) =>
      lines.push(`${p.endpoint}:${p.phase}:${p.message}`)
    );
    bus.emit('hello', { seq: 1 });
    bus.emit('build', {
      seq: 2,
      endpoint: 'a',
      phase: 'progress',
      message: 'Compiling serde'
    });
    bus.emit('build', { seq: 3, endpoint: 'a', phase: 'finished', ok: true });
    expect(lines).toEqual(['a:progress:Compiling serde', 'a:finished:']);
    model.dispose();
  });

  it('changes the poll interval live', async () => {
    const client = new FakeClient();
    const model = new EndpointsModel({ client, pollInterval: 1000 });
    await vi.advanceTimersByTimeAsync(2100);
    const slow = client.listCalls;
    model.pollInterval = 100;
    await vi.advanceTimersByTimeAsync(2100);
    // The pending 1 s tick runs out first, then ticks come every 100 ms.
    expect(client.listCalls - slow).toBeGreaterThanOrEqual(10);
    model.dispose();
  });

  it('does nothing after dispose: no listing, no timer re-armed', async () => {
    const client = new FakeClient();
    const bus = new FakeBus();
    const model = new EndpointsModel({
      client,
      events: bus,
      pollInterval: 100
    });
    await vi.advanceTimersByTimeAsync(250);
    bus.emit('hello', { seq: 1 });
    bus.emit('state', { seq: 2, endpoint: 'a' }); // arms the debouncer and the stale timer
    await flush();
    const calls = client.listCalls;
    model.dispose();
    // A poll's already-scheduled tick may still fire (as a no-op); nothing schedules another.
    await vi.runAllTimersAsync();
    expect(vi.getTimerCount()).toBe(0);
    bus.emit('state', { seq: 3, endpoint: 'a' });
    await vi.advanceTimersByTimeAsync(60000);
    expect(client.listCalls).toBe(calls);
  });
});
