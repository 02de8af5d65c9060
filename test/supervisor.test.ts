import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_WORKERS } from '../src/config.js';
import { ExitCode } from '../src/exit-codes.js';
import { REPEATED_STOP_MS, Supervisor } from '../src/primary/supervisor.js';
import {
  type Action,
  DEFAULT_BACKOFF,
  type SupervisorEvent,
  type SupervisorOptions,
} from '../src/primary/supervisor-events.js';

const OPTIONS: SupervisorOptions = {
  workers: 2,
  bootTimeoutMs: 5_000,
  bootConcurrency: 16,
  heartbeatTimeoutMs: 3_000,
  drainTimeoutMs: 8_000,
  shutdownDelayMs: 0,
  crashLoopLimit: 5,
  backoff: DEFAULT_BACKOFF,
};

/** A supervisor on a fake clock, with fake workers that become ready or exit when told. */
class Harness {
  clock = 0;
  readonly supervisor: Supervisor;
  readonly actions: Action[] = [];
  readonly live = new Map<number, number>(); // id → slot
  maxLive = 0;

  constructor(options: Partial<SupervisorOptions> = {}) {
    this.supervisor = new Supervisor({ ...OPTIONS, ...options }, () => this.clock);
  }

  send(event: SupervisorEvent): Action[] {
    const out = this.supervisor.handle(event);
    this.actions.push(...out);
    for (const a of out) if (a.type === 'spawn') this.live.set(a.id, a.slot);
    this.maxLive = Math.max(this.maxLive, this.live.size);
    return out;
  }

  spawned(from = 0): Extract<Action, { type: 'spawn' }>[] {
    return this.actions.slice(from).filter((a) => a.type === 'spawn');
  }

  of<T extends Action['type']>(type: T, from = 0): Extract<Action, { type: T }>[] {
    return this.actions.slice(from).filter((a): a is Extract<Action, { type: T }> => a.type === type);
  }

  readyAll(): void {
    for (const id of this.live.keys()) this.send({ type: 'ready', id });
  }

  exit(id: number, code: number | null = 1, signal: string | null = null, oomKills?: number): Action[] {
    this.live.delete(id);
    return this.send({ type: 'exit', id, code, signal, oomKills });
  }

  /** Advances the clock to the supervisor's next deadline (or by ms) and ticks. */
  advance(ms?: number): Action[] {
    const next = this.supervisor.nextDeadline();
    // A slot waiting to boot is due at once (its time may be past): the clock never goes back.
    this.clock = ms === undefined ? Math.max(this.clock, next ?? this.clock) : this.clock + ms;
    return this.send({ type: 'tick' });
  }

  idsInSlot(slot: number): number[] {
    return [...this.live].filter(([, s]) => s === slot).map(([id]) => id);
  }

  exitCode(): number | undefined {
    return this.of('exit').at(-1)?.code;
  }
}

function started(options: Partial<SupervisorOptions> = {}): Harness {
  const h = new Harness(options);
  h.send({ type: 'start' });
  h.readyAll();
  return h;
}

describe('Supervisor', () => {
  it('spawns one worker per slot at start', () => {
    const h = new Harness({ workers: 3 });
    h.send({ type: 'start' });
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1, 2],
    );
  });

  it('replaces a crashed worker in its slot after a back-off that doubles, then resets', () => {
    const h = started();
    const [first] = h.idsInSlot(1);
    h.exit(first as number);
    assert.equal(h.supervisor.nextDeadline(), 100);
    const before = h.actions.length;
    h.advance();
    assert.deepEqual(
      h.spawned(before).map((a) => a.slot),
      [1],
    );
    // Crash again right after becoming ready: 200 ms, then 400 ms.
    for (const expected of [200, 400]) {
      const [id] = h.idsInSlot(1);
      h.send({ type: 'ready', id: id as number });
      h.exit(id as number);
      assert.equal(h.of('log').at(-1)?.fields.restartInMs, expected);
      h.advance();
    }
    // Up for longer than resetAfterMs: back to 100 ms.
    const [id] = h.idsInSlot(1);
    h.send({ type: 'ready', id: id as number });
    h.clock += DEFAULT_BACKOFF.resetAfterMs;
    h.send({ type: 'heartbeat', id: id as number });
    h.exit(id as number, null, 'SIGKILL');
    assert.equal(h.of('log').at(-1)?.fields.restartInMs, 100);
    assert.equal(h.supervisor.snapshot().restarts.crash, 4);
  });

  it('caps the back-off at 10 s', () => {
    const h = started({ crashLoopLimit: 1000 });
    for (let i = 0; i < 10; i++) {
      const [id] = h.idsInSlot(0);
      h.send({ type: 'ready', id: id as number });
      h.exit(id as number);
      h.advance();
    }
    assert.equal(
      h
        .of('log')
        .filter((l) => l.msg === 'worker exited unexpectedly')
        .at(-1)?.fields.restartInMs,
      10_000,
    );
  });

  it('gives up with the crash-loop exit code after CRASH_LOOP_LIMIT boot failures in a row', () => {
    const h = new Harness({ workers: 2, crashLoopLimit: 3 });
    h.send({ type: 'start' });
    for (let i = 0; i < 20 && h.exitCode() === undefined; i++) {
      const [id] = h.live.keys();
      h.exit(id as number);
      if (h.supervisor.phase === 'running') h.advance();
    }
    // The last live worker is killed; when it exits, the primary exits.
    for (const id of [...h.live.keys()]) h.exit(id, null, 'SIGKILL');
    assert.equal(h.exitCode(), ExitCode.crashLoop);
    assert.ok(h.spawned().length <= 2 + 3, `forks bounded: ${h.spawned().length}`);
    assert.ok(h.of('log').some((l) => l.level === 'fatal' && /3 workers in a row failed/.test(l.msg)));
  });

  it('a ready worker resets the boot-failure streak', () => {
    const h = new Harness({ workers: 1, crashLoopLimit: 2 });
    h.send({ type: 'start' });
    for (let i = 0; i < 5; i++) {
      const [id] = h.live.keys();
      h.exit(id as number); // boot failure
      h.advance();
      const [next] = h.live.keys();
      h.send({ type: 'ready', id: next as number });
      h.exit(next as number); // crash after ready
      h.advance();
    }
    assert.equal(h.exitCode(), undefined);
  });

  it('kills a worker that does not become ready within the boot timeout', () => {
    const h = new Harness({ workers: 1 });
    h.send({ type: 'start' });
    assert.equal(h.supervisor.nextDeadline(), OPTIONS.bootTimeoutMs);
    const out = h.advance();
    assert.deepEqual(
      out.filter((a) => a.type === 'kill'),
      [{ type: 'kill', id: 1 }],
    );
    h.exit(1, null, 'SIGKILL');
    assert.equal(h.supervisor.snapshot().restarts.boot, 1);
  });

  it('a worker killed by a SIGKILL the primary did not send, as the cgroup counts one more OOM kill, is logged oomKilled', () => {
    const h = started({ oomKillsAtStart: 4 });
    const exited = (from: number) =>
      h.of('log', from).find((l) => l.msg === 'worker exited unexpectedly')?.fields;
    let from = h.actions.length;
    h.exit(1, null, 'SIGKILL', 5);
    assert.equal(exited(from)?.oomKilled, true);
    // No new kill counted: a kill -9 from elsewhere.
    h.advance();
    from = h.actions.length;
    h.exit(2, null, 'SIGKILL', 5);
    assert.equal(exited(from)?.oomKilled, undefined);
    // Another signal, or no count to read: never.
    h.advance();
    h.readyAll();
    const [a, b] = [...h.live.keys()] as [number, number];
    from = h.actions.length;
    h.exit(a, null, 'SIGTERM', 6);
    h.exit(b, null, 'SIGKILL', undefined);
    assert.ok(h.of('log', from).every((l) => l.fields.oomKilled === undefined));
    // For /metrics: the one OOM kill, among 4 restarts by crash.
    assert.deepEqual([h.supervisor.snapshot().oomKills, h.supervisor.snapshot().restarts.crash], [1, 4]);
    // No count at start: nothing to match a kill against.
    const unknown = started();
    const at = unknown.actions.length;
    unknown.exit(1, null, 'SIGKILL', 9);
    assert.equal(
      unknown.of('log', at).find((l) => l.msg === 'worker exited unexpectedly')?.fields.oomKilled,
      undefined,
    );
  });

  it('two workers OOM-killed before either exit is seen are both told; a worker the primary killed (hung) takes no OOM kill', () => {
    const h = started({ oomKillsAtStart: 0 });
    const from = h.actions.length;
    h.exit(1, null, 'SIGKILL', 2);
    h.exit(2, null, 'SIGKILL', 2);
    const exits = h.of('log', from).filter((l) => l.msg === 'worker exited unexpectedly');
    assert.deepEqual(
      exits.map((l) => l.fields.oomKilled),
      [true, true],
    );
    assert.equal(h.supervisor.snapshot().oomKills, 2);
    // Killed as hung while an unrelated kill was counted: not an OOM kill, and that kill stays
    // unmatched for a worker killed from outside next.
    const hung = started({ oomKillsAtStart: 0 });
    hung.clock = 2_000;
    hung.send({ type: 'heartbeat', id: 1 });
    hung.advance();
    let at = hung.actions.length;
    hung.exit(2, null, 'SIGKILL', 1);
    const killed = hung.of('log', at).find((l) => l.msg === 'worker exited unexpectedly');
    assert.deepEqual([killed?.fields.cause, killed?.fields.oomKilled], ['hung', undefined]);
    at = hung.actions.length;
    hung.exit(1, null, 'SIGKILL', 1);
    assert.equal(
      hung.of('log', at).find((l) => l.msg === 'worker exited unexpectedly')?.fields.oomKilled,
      true,
    );
    assert.equal(hung.supervisor.snapshot().oomKills, 1);
    // OOM-killed while the service stops: counted, though no restart follows.
    const stopping = started({ oomKillsAtStart: 0 });
    stopping.send({ type: 'signal', signal: 'SIGTERM' });
    stopping.exit(1, null, 'SIGKILL', 1);
    const { oomKills, restarts } = stopping.supervisor.snapshot();
    assert.deepEqual([oomKills, restarts.crash + restarts.boot], [1, 0]);
  });

  it('kills a hung worker (no heartbeat) and replaces it', () => {
    const h = started();
    h.clock = 2_000;
    h.send({ type: 'heartbeat', id: 1 });
    const out = h.advance(); // worker 2 is silent since t=0
    assert.deepEqual(
      out.filter((a) => a.type === 'kill'),
      [{ type: 'kill', id: 2 }],
    );
    h.exit(2, null, 'SIGKILL');
    h.advance();
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1, 1],
    );
    assert.equal(h.supervisor.snapshot().restarts.hung, 1);
  });

  it('SIGTERM kills a worker still booting (it has nothing to drain) and drains the serving one', () => {
    const h = new Harness();
    h.send({ type: 'start' });
    h.send({ type: 'ready', id: 1 });
    const out = h.send({ type: 'signal', signal: 'SIGTERM' });
    assert.deepEqual(
      out.filter((a) => a.type === 'kill' || a.type === 'drain'),
      [
        { type: 'drain', id: 1, delayMs: 0, serviceStops: true },
        { type: 'kill', id: 2 },
      ],
    );
  });

  it('SIGTERM drains every worker and exits 0 once they are gone', () => {
    const h = started();
    const out = h.send({ type: 'signal', signal: 'SIGTERM' });
    assert.deepEqual(
      out.filter((a) => a.type === 'drain'),
      [
        { type: 'drain', id: 1, delayMs: 0, serviceStops: true },
        { type: 'drain', id: 2, delayMs: 0, serviceStops: true },
      ],
    );
    h.exit(1, 0);
    assert.equal(h.exitCode(), undefined);
    h.exit(2, 0);
    assert.equal(h.exitCode(), ExitCode.ok);
  });

  it('a worker that crashes or is killed from outside while it drains makes the stop unclean: exit code 5', () => {
    for (const [code, signal] of [
      [1, null],
      [null, 'SIGKILL'],
    ] as const) {
      const h = started();
      h.send({ type: 'signal', signal: 'SIGTERM' });
      h.exit(1, code, signal);
      assert.equal(h.of('log').at(-1)?.msg, 'worker exited while draining; its open requests are lost');
      assert.equal(h.of('log').at(-1)?.level, 'error');
      h.exit(2, 0);
      assert.equal(h.exitCode(), ExitCode.forcedStop, `${code ?? signal}`);
    }
  });

  it('SIGHUP, SIGTTIN and SIGTTOU while stopping are ignored, each with a log line', () => {
    const h = started();
    h.send({ type: 'signal', signal: 'SIGTERM' });
    const from = h.actions.length;
    for (const signal of ['SIGHUP', 'SIGTTIN', 'SIGTTOU'] as const) h.send({ type: 'signal', signal });
    assert.deepEqual(
      h.actions.slice(from).map((a) => (a.type === 'log' ? a.msg : a.type)),
      ['SIGHUP', 'SIGTTIN', 'SIGTTOU'].map((s) => `${s} ignored: the service is stopping`),
    );
  });

  it('a worker that outlives the drain timeout is killed and the exit code says so', () => {
    const h = started();
    h.send({ type: 'signal', signal: 'SIGTERM' });
    h.exit(1, 0);
    assert.equal(h.supervisor.nextDeadline(), OPTIONS.drainTimeoutMs);
    const out = h.advance();
    assert.deepEqual(
      out.filter((a) => a.type === 'kill'),
      [{ type: 'kill', id: 2 }],
    );
    h.exit(2, null, 'SIGKILL');
    assert.equal(h.exitCode(), ExitCode.forcedStop);
  });

  it('the drain timeout counts from the end of SHUTDOWN_DELAY_MS, not from the stop signal', () => {
    // A Kubernetes-style delay longer than the drain timeout: counted from the signal, every
    // worker would be killed while still waiting to close its listener.
    const h = started({ shutdownDelayMs: 10_000 });
    const out = h.send({ type: 'signal', signal: 'SIGTERM' });
    assert.deepEqual(
      out.filter((a) => a.type === 'drain').map((a) => a.delayMs),
      [10_000, 10_000],
    );
    assert.equal(h.supervisor.nextDeadline(), 10_000 + OPTIONS.drainTimeoutMs);
    assert.deepEqual(
      h.advance(10_000 + OPTIONS.drainTimeoutMs - 1).filter((a) => a.type === 'kill'),
      [],
    );
    h.exit(1, 0);
    assert.deepEqual(
      h.advance(1).filter((a) => a.type === 'kill'),
      [{ type: 'kill', id: 2 }],
    );
  });

  it('a worker killed at its drain deadline is not overdue again while its exit is on the way', () => {
    const h = started({ workers: 1 });
    h.send({ type: 'signal', signal: 'SIGTERM' });
    assert.equal(h.advance().filter((a) => a.type === 'kill').length, 1);
    const from = h.actions.length;
    h.advance(1);
    assert.deepEqual(h.actions.slice(from), [], 'a second kill or log line for the same worker');
    assert.equal(h.supervisor.nextDeadline(), undefined, 'a deadline already past keeps the primary ticking');
  });

  it('a second stop signal kills at once, and the log names both', () => {
    const h = started();
    h.send({ type: 'signal', signal: 'SIGTERM' });
    const out = h.send({ type: 'signal', signal: 'SIGINT' });
    assert.equal(out.filter((a) => a.type === 'kill').length, 2);
    assert.equal(
      h.of('log').find((l) => l.msg.endsWith('stopping now'))?.msg,
      'SIGINT after SIGTERM: stopping now',
    );
    h.exit(1, null, 'SIGKILL');
    h.exit(2, null, 'SIGKILL');
    assert.equal(h.exitCode(), ExitCode.forcedStop);
  });

  it('the same stop signal again within REPEATED_STOP_MS is the same one; later, it kills at once', () => {
    const h = started();
    h.send({ type: 'signal', signal: 'SIGTERM' });
    h.clock += REPEATED_STOP_MS - 1;
    assert.equal(h.send({ type: 'signal', signal: 'SIGTERM' }).filter((a) => a.type === 'kill').length, 0);
    assert.match(h.of('log').at(-1)?.msg ?? '', /^SIGTERM again within 100 ms: taken as the same one/);
    h.clock += 1;
    assert.equal(h.send({ type: 'signal', signal: 'SIGTERM' }).filter((a) => a.type === 'kill').length, 2);
  });

  it('a tick later than watchMs (the primary was paused, with its workers: docker pause) kills none; silence a full timeout after does', () => {
    const h = started();
    h.clock = 500;
    h.send({ type: 'tick' });
    assert.equal(h.supervisor.nextTick(), 500 + h.supervisor.watchMs);
    h.clock = 12_000;
    const paused = h.send({ type: 'tick' });
    assert.equal(paused.filter((a) => a.type === 'kill').length, 0);
    assert.equal(h.of('log').at(-1)?.fields.gapMs, 11_500);
    h.clock += OPTIONS.heartbeatTimeoutMs;
    assert.equal(h.advance(0).filter((a) => a.type === 'kill').length, 2);
    // Late by less than watchMs: judged as ever.
    const g = started();
    g.clock = OPTIONS.heartbeatTimeoutMs - 100;
    g.send({ type: 'tick' });
    assert.equal(g.supervisor.nextTick(), OPTIONS.heartbeatTimeoutMs);
    g.clock = OPTIONS.heartbeatTimeoutMs + g.supervisor.watchMs;
    assert.equal(g.advance(0).filter((a) => a.type === 'kill').length, 2);
  });

  it('any event after a pause tells of it: a heartbeat read before the overdue tick does not get the others killed', () => {
    const h = started();
    const [first] = [...h.live.keys()] as [number];
    h.supervisor.nextTick();
    h.clock = 2 * OPTIONS.heartbeatTimeoutMs;
    h.send({ type: 'heartbeat', id: first });
    assert.ok(h.of('log').some((l) => l.msg.startsWith('the primary did not run')));
    assert.equal(h.advance(0).filter((a) => a.type === 'kill').length, 0);
  });

  it('a pause while the primary performs an event (a fork, a log write) shows at the next tick', () => {
    const h = started();
    h.clock = 1_000;
    h.send({ type: 'tick' });
    // Frozen for 10 s between the event and the primary asking when to tick next.
    h.clock = 11_000;
    assert.equal(h.supervisor.nextTick(), 1_000 + h.supervisor.watchMs);
    const after = h.send({ type: 'tick' });
    assert.equal(after.filter((a) => a.type === 'kill').length, 0);
    assert.equal(h.of('log').at(-1)?.fields.gapMs, 10_000);
  });

  const deadlines: readonly [string, () => Harness, number][] = [
    [
      'boot',
      () => {
        const h = new Harness();
        h.send({ type: 'start' });
        return h;
      },
      OPTIONS.bootTimeoutMs,
    ],
    [
      'drain',
      () => {
        const h = started();
        h.send({ type: 'signal', signal: 'SIGTERM' });
        return h;
      },
      OPTIONS.drainTimeoutMs,
    ],
  ];
  for (const [what, setUp, timeoutMs] of deadlines) {
    it(`a pause of the primary moves ${what} deadlines past it too`, () => {
      const h = setUp();
      h.clock = 1_000;
      h.send({ type: 'tick' });
      h.supervisor.nextTick();
      h.clock = 20_000;
      assert.equal(h.advance(0).filter((a) => a.type === 'kill').length, 0);
      // It saw 1 s of the deadline's time before the pause: the rest runs from the resume.
      h.clock = 20_000 + timeoutMs - 1_000 - 1;
      assert.equal(h.advance(0).filter((a) => a.type === 'kill').length, 0);
      h.clock += 1;
      assert.equal(h.advance(0).filter((a) => a.type === 'kill').length, 2);
    });
  }

  it('a pause of the primary while a worker boots leaves the logged boot time its real one', () => {
    const h = new Harness();
    h.send({ type: 'start' });
    h.clock = 1_000;
    h.send({ type: 'tick' });
    h.supervisor.nextTick();
    h.clock = 20_000;
    h.advance(0);
    h.clock = 20_050;
    h.send({ type: 'ready', id: 1 });
    const ready = h.of('log').find((a) => a.msg === 'worker ready');
    assert.equal(ready?.fields.bootMs, 20_050);
  });

  it('does not respawn while stopping', () => {
    const h = started();
    h.send({ type: 'signal', signal: 'SIGTERM' });
    h.exit(1, 1);
    assert.equal(h.spawned().length, 2);
    assert.equal(h.supervisor.nextDeadline(), OPTIONS.drainTimeoutMs);
  });

  it('a fatal bind error stops the service with the bind exit code and no respawn', () => {
    const h = new Harness({ workers: 2 });
    h.send({ type: 'start' });
    h.send({ type: 'fatal', id: 1, code: 'EADDRINUSE', message: 'listen EADDRINUSE' });
    h.exit(1, ExitCode.bind);
    h.exit(2, null, 'SIGKILL');
    assert.equal(h.exitCode(), ExitCode.bind);
    assert.equal(h.spawned().length, 2);
  });

  it('SIGHUP replaces workers one slot at a time: new ready, then old drained', () => {
    const h = started({ workers: 3 });
    const from = h.actions.length;
    h.send({ type: 'signal', signal: 'SIGHUP' });
    for (let slot = 0; slot < 3; slot++) {
      const [oldId, newId] = h.idsInSlot(slot) as [number, number];
      assert.ok(newId > oldId, `slot ${slot} has a new worker starting`);
      assert.equal(h.live.size, 4, 'never more than one extra worker');
      const out = h.send({ type: 'ready', id: newId });
      assert.deepEqual(
        out.filter((a) => a.type === 'drain'),
        [{ type: 'drain', id: oldId, delayMs: 0, serviceStops: false }],
      );
      h.exit(oldId, 0);
    }
    assert.deepEqual(
      h.spawned(from).map((a) => a.slot),
      [0, 1, 2],
    );
    assert.ok(h.of('log', from).some((l) => l.msg === 'rolling restart complete'));
    assert.equal(h.supervisor.snapshot().restarts.roll, 3);
    assert.equal(h.maxLive, 4);
  });

  it('SIGHUP while workers still boot: the roll waits for each to be ready, then replaces it', () => {
    const h = new Harness({ workers: 2 });
    h.send({ type: 'start' });
    const [boot0] = h.idsInSlot(0) as [number];
    const [boot1] = h.idsInSlot(1) as [number];
    h.send({ type: 'signal', signal: 'SIGHUP' });
    assert.equal(h.spawned().length, 2, 'a replacement forked before the booting worker was ready');
    h.send({ type: 'ready', id: boot0 });
    const [, new0] = h.idsInSlot(0) as [number, number];
    assert.ok(new0 > boot1, 'slot 0 gets a replacement once its booting worker is ready');
    assert.deepEqual(
      h.send({ type: 'ready', id: new0 }).filter((a) => a.type === 'drain'),
      [{ type: 'drain', id: boot0, delayMs: 0, serviceStops: false }],
    );
    h.exit(boot0, 0);
    // Slot 1's booting worker fails: the supervisor refills the slot with a worker forked after
    // the SIGHUP, and the roll ends without replacing that one.
    h.exit(boot1, 1);
    const done = h.of('log').filter((l) => l.msg === 'rolling restart complete');
    assert.deepEqual(
      done.map((l) => l.fields),
      [{ workers: 2, replaced: 1 }],
    );
    h.advance();
    assert.equal(h.idsInSlot(1).length, 1, 'slot 1 refilled once');
    assert.equal(h.supervisor.snapshot().restarts.roll, 1);
  });

  it("a worker forked after the SIGHUP (a failed or crashed worker's refill) is not replaced by the roll, even once it serves", () => {
    for (const booted of [false, true]) {
      const h = new Harness({ workers: 2 });
      h.send({ type: 'start' });
      const [w0] = h.idsInSlot(0) as [number];
      const [w1] = h.idsInSlot(1) as [number];
      h.send({ type: 'ready', id: w0 });
      if (booted) h.send({ type: 'ready', id: w1 });
      h.send({ type: 'signal', signal: 'SIGHUP' });
      const [, new0] = h.idsInSlot(0) as [number, number];
      h.exit(w1, 1); // fails to boot, or crashes while serving
      h.advance();
      const [refill] = h.idsInSlot(1) as [number];
      h.send({ type: 'ready', id: refill });
      const from = h.actions.length;
      h.send({ type: 'ready', id: new0 });
      h.exit(w0, 0);
      assert.deepEqual(h.spawned(from), [], `booted ${booted}: the refill was replaced`);
      const done = h.of('log', from).find((l) => l.msg === 'rolling restart complete');
      assert.deepEqual(done?.fields, { workers: 2, replaced: 1 }, `booted ${booted}`);
    }
  });

  it("a roll's old worker that crashes while it drains is replaced all the same, logged as a warning", () => {
    const h = started({ workers: 1 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [old0, new0] = h.idsInSlot(0) as [number, number];
    h.send({ type: 'ready', id: new0 });
    h.exit(old0, 1);
    const replaced = h.of('log').find((l) => l.msg === 'worker replaced');
    assert.equal(replaced?.level, 'warn');
    assert.deepEqual(h.spawned().length, 2, 'nothing respawned: the slot has its new worker');
  });

  it('SIGHUP during a roll schedules exactly one more roll', () => {
    const h = started({ workers: 2 });
    const from = h.actions.length;
    h.send({ type: 'signal', signal: 'SIGHUP' });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    for (let step = 0; step < 4; step++) {
      const ids = [...h.live.keys()].sort((a, b) => a - b);
      const newest = ids.at(-1) as number;
      const oldId = h.idsInSlot(h.live.get(newest) as number)[0] as number;
      h.send({ type: 'ready', id: newest });
      h.exit(oldId, 0);
      assert.ok(h.live.size <= 3);
    }
    assert.equal(h.spawned(from).length, 4, 'two rolls of two workers');
    assert.equal(h.of('log', from).filter((l) => l.msg === 'rolling restart complete').length, 2);
    assert.equal(h.live.size, 2);
  });

  it("a worker of another slot becoming ready (a crash's respawn) does not drain the old worker the roll is replacing", () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [old0] = h.idsInSlot(0) as [number, number];
    const [old1] = h.idsInSlot(1) as [number];
    h.exit(old1, 1);
    h.advance(); // slot 1's respawn after its back-off
    const [respawn1] = h.idsInSlot(1) as [number];
    const out = h.send({ type: 'ready', id: respawn1 });
    assert.deepEqual(
      out.filter((a) => a.type === 'drain'),
      [],
      `old worker ${old0} drained before its own replacement was ready`,
    );
  });

  it('a roll that reaches a slot whose worker is still booting after a crash leaves it be: no extra worker, no roll counted', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [old0, new0] = h.idsInSlot(0) as [number, number];
    const [old1] = h.idsInSlot(1) as [number];
    h.exit(old1, 1);
    h.advance(); // slot 1's respawn: a new worker, not yet ready
    const from = h.actions.length;
    h.send({ type: 'ready', id: new0 });
    h.exit(old0, 0);
    assert.deepEqual(h.spawned(from), [], 'the roll forked a replacement for a worker that is itself new');
    assert.equal(h.supervisor.snapshot().restarts.roll, 1);
  });

  it('SIGTTOU removing the slot the roll is replacing ends that roll: the next SIGHUP starts a new one at once', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [old0, new0] = h.idsInSlot(0) as [number, number];
    h.send({ type: 'ready', id: new0 });
    h.exit(old0, 0); // the roll moves on to slot 1
    h.send({ type: 'signal', signal: 'SIGTTOU' });
    for (const id of h.idsInSlot(1)) h.exit(id, 0);
    const from = h.actions.length;
    h.send({ type: 'signal', signal: 'SIGHUP' });
    assert.equal(h.of('log', from).filter((l) => l.msg === 'rolling restart started').length, 1);
    assert.equal(h.spawned(from).length, 1, 'slot 0 is replaced');
  });

  it('a roll aborted with a SIGHUP queued drops that SIGHUP: the next one runs one roll, not two', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    h.send({ type: 'signal', signal: 'SIGHUP' }); // queued behind the first
    h.send({ type: 'signal', signal: 'SIGHUP' }); // the same one more roll
    assert.deepEqual(
      h
        .of('log')
        .filter((l) => l.msg.startsWith('SIGHUP during'))
        .map((l) => l.msg),
      [
        'SIGHUP during a rolling restart: one more roll scheduled',
        'SIGHUP during a rolling restart: one more roll already scheduled',
      ],
    );
    const [old0, new0] = h.idsInSlot(0) as [number, number];
    h.send({ type: 'ready', id: new0 });
    h.exit(new0, 1); // a bad release: the roll stops, and the queued one with it
    h.exit(old0, 0);
    h.advance();
    h.readyAll();
    const from = h.actions.length;
    h.send({ type: 'signal', signal: 'SIGHUP' });
    for (let step = 0; step < 4; step++) {
      const newest = Math.max(...h.live.keys());
      const [old] = h.idsInSlot(h.live.get(newest) as number) as [number];
      if (old === newest) break;
      h.send({ type: 'ready', id: newest });
      h.exit(old, 0);
    }
    assert.equal(h.of('log', from).filter((l) => l.msg === 'rolling restart started').length, 1);
    assert.equal(h.spawned(from).length, 2, 'one roll of two workers');
  });

  it('a replacement that fails to boot aborts the roll and keeps the old worker', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    h.exit(newId, 1);
    assert.equal(h.of('drain').length, 0);
    assert.equal(h.of('kill').length, 0);
    const old = h.supervisor.snapshot().workers.find((w) => w.id === oldId);
    assert.equal(old?.state, 'listening');
    assert.ok(h.of('log').some((l) => /rolling restart aborted/.test(l.msg)));
  });

  it('a roll whose old worker died and whose replacement times out refills the slot with back-off, both failures counted', () => {
    const h = started({ workers: 2, bootTimeoutMs: 1_500 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    h.exit(oldId, null, 'SIGKILL');
    const killed = h.advance(); // the replacement's boot timeout
    assert.deepEqual(
      killed.filter((a) => a.type === 'kill'),
      [{ type: 'kill', id: newId }],
    );
    const from = h.actions.length;
    h.exit(newId, null, 'SIGKILL');
    const logs = h.of('log', from);
    assert.ok(!logs.some((l) => /old one keeps serving/.test(l.msg)), JSON.stringify(logs));
    assert.deepEqual(
      logs
        .filter((l) => l.msg === 'worker exited unexpectedly')
        .map((l) => [l.fields.cause, l.fields.restartInMs]),
      [['boot', 200]],
      "the second failure in a row in the slot: the old worker's crash counted toward the back-off",
    );
    h.advance();
    assert.deepEqual(
      h.spawned(from).map((a) => a.slot),
      [0],
    );
    h.readyAll();
    assert.deepEqual([...h.live.values()].sort(), [0, 1]);
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 1, hung: 0, boot: 1, roll: 0, scale: 0 });
  });

  it('a replacement that crashes after it was ready, while its old worker drains: the roll stops there (a bad release); its slot restarts with back-off, a queued SIGHUP goes too', () => {
    const h = started({ workers: 2 });
    const [, old1] = [...h.live.keys()] as [number, number];
    h.send({ type: 'signal', signal: 'SIGHUP' });
    h.send({ type: 'signal', signal: 'SIGHUP' }); // one more roll, queued behind this one
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    h.send({ type: 'ready', id: newId }); // the old one is now draining
    const from = h.actions.length;
    h.exit(newId, 1);
    assert.ok(
      h
        .of('log', from)
        .some((l) => l.msg === 'rolling restart aborted: the new worker exited before the roll moved on'),
    );
    assert.equal(
      h.of('log', from).find((l) => l.msg === 'worker exited unexpectedly')?.fields.cause,
      'crash',
    );
    h.exit(oldId, 0);
    assert.equal(
      h.of('log', from).filter((l) => l.msg === 'worker exited unexpectedly').length,
      1,
      'the drained old worker is not a crash',
    );
    assert.ok(h.of('log', from).some((l) => l.msg === 'worker stopped' && l.fields.reason === 'roll'));
    // Two replacements in slot 0: the roll's (its old worker drained) and the crash's.
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 1, hung: 0, boot: 0, roll: 1, scale: 0 });
    h.advance(); // slot 0's back-off
    h.readyAll();
    assert.deepEqual(
      h.spawned(from).map((a) => a.slot),
      [0],
      'slot 1 keeps its old worker',
    );
    assert.ok(h.live.has(old1));
    assert.ok(
      !h.of('log', from).some((l) => l.msg === 'rolling restart started'),
      'the queued roll is dropped',
    );
    assert.equal(h.supervisor.snapshot().restarts.crash, 1);
  });

  it('a replacement killed as hung after it was ready, its old worker gone first: its exit ends the roll, and the next SIGHUP starts afresh', () => {
    const h = started({ workers: 2 });
    const [, old1] = [...h.live.keys()] as [number, number];
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    h.send({ type: 'ready', id: newId });
    h.clock = OPTIONS.heartbeatTimeoutMs - 1;
    h.send({ type: 'heartbeat', id: old1 });
    const from = h.actions.length;
    assert.deepEqual(
      h
        .advance(1)
        .filter((a) => a.type === 'kill')
        .map((a) => a.id),
      [newId],
    );
    h.exit(oldId, 0);
    assert.equal(h.spawned(from).length, 0, 'nothing to do while the replacement is being killed');
    h.exit(newId, null, 'SIGKILL');
    assert.ok(h.of('log', from).some((l) => /^rolling restart aborted/.test(l.msg)));
    assert.equal(h.spawned(from).length, 0, 'slot 1 keeps its old worker; slot 0 waits for its back-off');
    assert.equal(h.supervisor.snapshot().restarts.hung, 1);
    h.advance(); // slot 0's back-off
    h.readyAll();
    const again = h.actions.length;
    h.send({ type: 'signal', signal: 'SIGHUP' });
    assert.ok(h.of('log', again).some((l) => l.msg === 'rolling restart started'));
    assert.equal(h.spawned(again).length, 1);
  });

  it('SIGTERM while the supervisor gives up is not called a second one', () => {
    const h = new Harness({ workers: 2, crashLoopLimit: 1 });
    h.send({ type: 'start' });
    h.exit(h.idsInSlot(0)[0] as number, 1); // a boot failure with none serving: give up, kill the other
    assert.equal(h.of('log').find((l) => l.level === 'fatal')?.fields.exitCode, ExitCode.crashLoop);
    h.send({ type: 'signal', signal: 'SIGTERM' });
    assert.equal(h.of('log').at(-1)?.msg, 'SIGTERM while giving up: stopping now');
  });

  for (const first of ['replacement', 'old worker'] as const)
    it(`an old worker killed as hung while its replacement fails is replaced once, each failure counted once (the ${first} exits first)`, () => {
      const h = started({ workers: 1 });
      h.send({ type: 'signal', signal: 'SIGHUP' });
      const [oldId, newId] = h.idsInSlot(0) as [number, number];
      const hung = h.advance(); // the old one's heartbeat timeout comes before the new one's boot timeout
      assert.deepEqual(
        hung.filter((a) => a.type === 'kill'),
        [{ type: 'kill', id: oldId }],
      );
      if (first === 'old worker') h.exit(oldId, null, 'SIGKILL');
      h.exit(newId, 1);
      const from = h.actions.length;
      h.advance(); // the slot's respawn, without waiting for the old one to go
      assert.deepEqual(
        h.spawned(from).map((a) => a.slot),
        [0],
      );
      // Late: SIGKILL waits for a process in uninterruptible sleep.
      if (first === 'replacement') h.exit(oldId, null, 'SIGKILL');
      h.advance(60_000);
      assert.equal(h.spawned().length, 3, 'start, roll, one respawn');
      assert.equal(h.live.size, 1);
      assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 0, hung: 1, boot: 1, roll: 0, scale: 0 });
    });

  it('an old worker killed as hung before its replacement is ready counts as hung, not also as a roll', () => {
    const h = started({ workers: 1 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    h.clock = OPTIONS.heartbeatTimeoutMs - 1;
    h.send({ type: 'heartbeat', id: newId }); // the replacement is alive; the old one is silent
    assert.deepEqual(
      h.advance(1).filter((a) => a.type === 'kill'),
      [{ type: 'kill', id: oldId }],
    );
    h.send({ type: 'ready', id: newId });
    assert.equal(h.of('drain').length, 0, 'a worker being killed is not drained');
    const from = h.actions.length;
    h.exit(oldId, null, 'SIGKILL');
    assert.ok(h.of('log', from).some((l) => l.msg === 'rolling restart complete'));
    assert.equal(h.spawned(from).length, 0, 'the replacement holds the slot');
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 0, hung: 1, boot: 0, roll: 0, scale: 0 });
  });

  it('a replacement killed by a group SIGHUP after its old worker crashed: another starts at once, and the roll and the one queued go on', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [old0, new0] = h.idsInSlot(0) as [number, number];
    h.exit(old0, 1);
    h.send({ type: 'signal', signal: 'SIGHUP' }); // the group signal: the primary's copy queues a roll
    const from = h.actions.length;
    h.exit(new0, null, 'SIGHUP');
    assert.deepEqual(
      h.spawned(from).map((a) => a.slot),
      [0],
      'another replacement at once',
    );
    // Each step: the newest worker becomes ready, and the old one of its slot, if any, leaves.
    for (let step = 0; step < 4; step++) {
      const newest = Math.max(...h.live.keys());
      const old = h.idsInSlot(h.live.get(newest) as number).find((id) => id !== newest);
      h.send({ type: 'ready', id: newest });
      if (old !== undefined) h.exit(old, 0);
    }
    assert.equal(h.of('log', from).filter((l) => /rolling restart aborted/.test(l.msg)).length, 0);
    assert.equal(h.of('log').filter((l) => l.msg === 'rolling restart complete').length, 2);
    assert.equal(h.live.size, 2);
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 1, hung: 0, boot: 0, roll: 3, scale: 0 });
  });

  it('SIGTERM during a roll tells the old worker, already draining, that the service stops: its /readyz turns 503 too', () => {
    const h = started({ workers: 1 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    assert.deepEqual(
      h.send({ type: 'ready', id: newId }).filter((a) => a.type === 'drain'),
      [{ type: 'drain', id: oldId, delayMs: 0, serviceStops: false }],
    );
    const drains = h
      .send({ type: 'signal', signal: 'SIGTERM' })
      .filter((a) => a.type === 'drain')
      .sort((a, b) => a.id - b.id);
    assert.deepEqual(drains, [
      { type: 'drain', id: oldId, delayMs: 0, serviceStops: true },
      { type: 'drain', id: newId, delayMs: 0, serviceStops: true },
    ]);
    h.exit(oldId, 0);
    h.exit(newId, 0);
    assert.equal(h.exitCode(), ExitCode.ok);
  });

  it('an old worker that crashes while its replacement starts counts as a crash, not as a roll, whatever the replacement then does', () => {
    const ready = started({ workers: 1 });
    ready.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = ready.idsInSlot(0) as [number, number];
    ready.exit(oldId, 1);
    ready.send({ type: 'ready', id: newId });
    assert.deepEqual(ready.supervisor.snapshot().restarts, { crash: 1, hung: 0, boot: 0, roll: 0, scale: 0 });

    // The replacement killed by a group signal before it was ready is refilled, and no failure.
    const signalled = started({ workers: 1 });
    signalled.send({ type: 'signal', signal: 'SIGHUP' });
    const [old2, new2] = signalled.idsInSlot(0) as [number, number];
    signalled.exit(old2, 1);
    signalled.exit(new2, null, 'SIGHUP');
    signalled.advance();
    signalled.readyAll();
    assert.equal(signalled.live.size, 1);
    assert.deepEqual(signalled.supervisor.snapshot().restarts, {
      crash: 1,
      hung: 0,
      boot: 0,
      roll: 0,
      scale: 0,
    });
  });

  it('SIGTTOU during a roll, then SIGTTIN: draining workers exit as planned, never more than configured', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    for (const slot of [0, 1]) {
      const [, newId] = h.idsInSlot(slot) as [number, number];
      h.send({ type: 'ready', id: newId });
      if (slot === 0) h.exit(h.idsInSlot(0)[0] as number, 0);
    }
    const [old1, new1] = h.idsInSlot(1) as [number, number]; // old1 is draining for the roll
    h.send({ type: 'signal', signal: 'SIGTTOU' });
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    h.readyAll();
    const from = h.actions.length;
    h.exit(new1, 0);
    h.exit(old1, 0);
    h.advance(60_000);
    assert.ok(!h.of('log', from).some((l) => l.msg === 'worker exited unexpectedly'));
    assert.equal(h.supervisor.snapshot().restarts.crash, 0);
    assert.deepEqual(h.spawned(from), []);
    assert.deepEqual([...h.live.values()].sort(), [0, 1]);
    assert.equal(h.supervisor.snapshot().configured, 2);
  });

  it('a fatal bind error after a worker has served is a boot failure: respawned with back-off, no exit', () => {
    const h = started({ workers: 2 });
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    const [added] = h.idsInSlot(2) as [number];
    h.send({ type: 'fatal', id: added, code: 'EMFILE', message: 'listen EMFILE' });
    h.exit(added, ExitCode.bind);
    assert.equal(h.exitCode(), undefined);
    assert.equal(h.supervisor.phase, 'running');
    assert.equal(h.of('log').find((l) => l.msg === 'worker exited unexpectedly')?.fields.cause, 'boot');
    const from = h.actions.length;
    h.advance();
    assert.deepEqual(
      h.spawned(from).map((a) => a.slot),
      [2],
    );
  });

  it('a new worker killed by a group SIGHUP before it was ready: the roll starts another, nothing counts as a failed boot', () => {
    const h = started({ workers: 2, crashLoopLimit: 1 });
    const from = h.actions.length;
    h.send({ type: 'signal', signal: 'SIGHUP' });
    h.send({ type: 'signal', signal: 'SIGHUP' }); // the same group signal, as the primary sees it
    const [oldId, firstNew] = h.idsInSlot(0) as [number, number];
    h.exit(firstNew, null, 'SIGHUP');
    assert.equal(h.exitCode(), undefined, 'a signalled boot is not a crash loop');
    const [, secondNew] = h.idsInSlot(0) as [number, number];
    assert.ok(secondNew > firstNew, 'another replacement starts at once');
    for (let step = 0; step < 4; step++) {
      const newest = Math.max(...h.live.keys());
      const old = h.idsInSlot(h.live.get(newest) as number)[0] as number;
      h.send({ type: 'ready', id: newest });
      h.exit(old, 0);
    }
    assert.equal(h.of('log', from).filter((l) => l.msg === 'rolling restart complete').length, 2);
    assert.ok(!h.live.has(oldId));
    assert.equal(h.live.size, 2);
    assert.equal(h.of('log', from).filter((l) => /rolling restart aborted/.test(l.msg)).length, 0);
    assert.equal(h.supervisor.snapshot().restarts.roll, 4, 'the killed replacement is not counted');
  });

  it('a worker killed by SIGTERM before it was ready at start is respawned, not counted toward the crash-loop limit', () => {
    const h = new Harness({ workers: 1, crashLoopLimit: 1 });
    h.send({ type: 'start' });
    // Killed again and again: no back-off growth, no restart counted, never a crash loop.
    for (let i = 0; i < 8; i++) {
      h.exit(h.idsInSlot(0)[0] as number, null, 'SIGTERM');
      assert.equal(h.of('log').at(-1)?.fields.restartInMs, DEFAULT_BACKOFF.initialMs);
      // Not before the delay it announced.
      const spawns = h.spawned().length;
      h.advance(DEFAULT_BACKOFF.initialMs - 1);
      assert.equal(h.spawned().length, spawns);
      h.advance();
    }
    assert.equal(h.exitCode(), undefined);
    assert.equal(h.spawned().length, 9);
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 0, hung: 0, boot: 0, roll: 0, scale: 0 });
    // A worker that exits on its own before ready still counts.
    h.exit(h.idsInSlot(0)[0] as number, 1);
    assert.equal(h.exitCode(), ExitCode.crashLoop);
  });

  it('roll after roll whose new worker fails while the old one serves never stops the service (bad release)', () => {
    const h = started({ workers: 2, crashLoopLimit: 2 });
    for (let i = 0; i < 5; i++) {
      h.send({ type: 'signal', signal: 'SIGHUP' });
      const newest = Math.max(...h.live.keys());
      h.exit(newest, 1);
      h.clock += 1_000;
      for (const id of h.live.keys()) h.send({ type: 'heartbeat', id });
    }
    assert.equal(h.exitCode(), undefined);
    assert.equal(h.of('drain').length, 0);
    assert.deepEqual(
      h.supervisor.snapshot().workers.map((w) => w.state),
      ['listening', 'listening'],
    );
    // Five rolls aborted: no worker was replaced, so none counts (a dashboard would show a bad
    // release as five good rolls).
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 0, hung: 0, boot: 0, roll: 0, scale: 0 });
    // Boot failures outside a roll still count: while a worker serves, the service goes on and says so,
    const [id] = h.idsInSlot(1) as [number];
    h.send({ type: 'ready', id });
    h.exit(id, 1);
    h.advance();
    h.exit(h.idsInSlot(1)[0] as number, 1);
    h.advance();
    h.exit(h.idsInSlot(1)[0] as number, 1);
    const error = h.of('log').find((l) => l.level === 'error' && /2 workers in a row failed/.test(l.msg));
    assert.match(error?.msg ?? '', /; 1 still serve, so the service goes on, retrying with back-off$/);
    assert.equal(h.exitCode(), undefined);
    // and gives up once none does.
    h.exit(h.idsInSlot(0)[0] as number, 1);
    h.advance();
    h.exit([...h.live.keys()][0] as number, 1);
    assert.ok(
      h.of('log').some((l) => l.level === 'fatal' && /workers in a row failed.*giving up/.test(l.msg)),
    );
    assert.equal(h.exitCode(), ExitCode.crashLoop);
  });

  it('the back-off is forgotten after 10 s of service in the slot, even when a roll replaced the worker', () => {
    const h = new Harness({ workers: 1, crashLoopLimit: 100 });
    h.send({ type: 'start' });
    for (let i = 0; i < 3; i++) {
      h.exit(h.idsInSlot(0)[0] as number, 1);
      h.advance();
    }
    h.readyAll();
    const beat = (ms: number) => {
      for (let t = 0; t < ms; t += 1_000) {
        h.clock += 1_000;
        for (const id of h.live.keys()) h.send({ type: 'heartbeat', id });
      }
    };
    beat(60_000);
    h.send({ type: 'signal', signal: 'SIGHUP' });
    const [oldId, newId] = h.idsInSlot(0) as [number, number];
    h.send({ type: 'ready', id: newId });
    h.exit(oldId, 0);
    beat(1_000);
    h.exit(newId, 1);
    assert.equal(h.of('log').at(-1)?.fields.restartInMs, DEFAULT_BACKOFF.initialMs);
  });

  it('boots at most bootConcurrency workers at once; the next starts when one is ready or fails', () => {
    const h = new Harness({ workers: 5, bootConcurrency: 2, crashLoopLimit: 10 });
    h.send({ type: 'start' });
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1],
    );
    // Waiting slots are due at a worker's ready or exit, not at a time: no tick spins meanwhile.
    assert.equal(h.supervisor.nextDeadline(), OPTIONS.bootTimeoutMs);
    const [first, second] = h.spawned().map((a) => a.id);
    h.clock = 300;
    h.send({ type: 'ready', id: first as number });
    h.advance();
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1, 2],
    );
    assert.ok((h.supervisor.nextDeadline() as number) > h.clock);
    // A failed boot frees its place too; its own slot comes back after the back-off.
    h.exit(second as number);
    h.advance();
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1, 2, 3],
    );
    for (let i = 0; i < 10 && h.live.size < 5; i++) {
      h.readyAll();
      h.advance();
    }
    assert.deepEqual(
      h
        .spawned()
        .map((a) => a.slot)
        .sort(),
      [0, 1, 1, 2, 3, 4],
    );
  });

  it('SIGTERM while workers wait to boot: none of them starts', () => {
    const h = new Harness({ workers: 4, bootConcurrency: 1 });
    h.send({ type: 'start' });
    const [id] = h.spawned().map((a) => a.id);
    h.send({ type: 'signal', signal: 'SIGTERM' });
    h.exit(id as number, null, 'SIGKILL');
    h.advance(60_000);
    assert.equal(h.spawned().length, 1);
    assert.equal(h.exitCode(), ExitCode.ok);
  });

  it('SIGTTIN while the boots are taken waits its turn; SIGTTOU drops a slot still waiting', () => {
    const h = new Harness({ workers: 1, bootConcurrency: 1 });
    h.send({ type: 'start' });
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    assert.equal(h.spawned().length, 1);
    h.send({ type: 'signal', signal: 'SIGTTOU' });
    h.readyAll();
    h.advance(60_000);
    assert.equal(h.spawned().length, 1);
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1],
    );
  });

  it("SIGTTIN never takes the count past WORKERS' maximum", () => {
    const h = started({ workers: MAX_WORKERS });
    const before = h.spawned().length;
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    assert.equal(h.spawned().length, before);
    assert.equal(h.supervisor.snapshot().configured, MAX_WORKERS);
    assert.match(h.of('log').at(-1)?.msg ?? '', /^SIGTTIN ignored: 1024 workers is the most/);
  });

  it('SIGTTIN adds a worker, SIGTTOU removes one, never below one', () => {
    const h = started({ workers: 1 });
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    assert.equal(h.supervisor.snapshot().configured, 3);
    assert.deepEqual(
      h.spawned().map((a) => a.slot),
      [0, 1, 2],
    );
    h.readyAll();
    for (let i = 0; i < 3; i++) {
      const out = h.send({ type: 'signal', signal: 'SIGTTOU' });
      for (const d of out.filter((a) => a.type === 'drain')) {
        assert.equal(d.serviceStops, false, 'one worker leaves; the service stays ready');
        h.exit(d.id, 0);
      }
    }
    assert.equal(h.supervisor.snapshot().configured, 1);
    assert.deepEqual([...h.live.values()], [0]);
    assert.ok(h.of('log').some((l) => /SIGTTOU ignored/.test(l.msg)));
    // Two added, two removed; the ignored SIGTTOU changed nothing.
    assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 0, hung: 0, boot: 0, roll: 0, scale: 4 });
    // A worker removed by scaling is not respawned.
    h.advance(60_000);
    assert.equal(h.spawned().length, 3);
  });
});

describe('Supervisor: stop, roll and boot edge cases', () => {
  it('SIGTERM while the only slot waits out its back-off, no worker alive, exits 0 at once', () => {
    const h = started({ workers: 1 });
    h.exit(1);
    h.send({ type: 'signal', signal: 'SIGTERM' });
    assert.equal(h.exitCode(), ExitCode.ok);
  });

  it("a roll's old worker killed at its drain deadline does not make a later clean stop exit 5", () => {
    const h = started({ workers: 1 });
    h.send({ type: 'signal', signal: 'SIGHUP' });
    h.send({ type: 'ready', id: 2 });
    for (let t = 0; t < 8_000 && !h.of('kill').some((a) => a.id === 1); t += 500) {
      h.send({ type: 'heartbeat', id: 2 });
      h.advance(500);
    }
    assert.ok(
      h.of('kill').some((a) => a.id === 1),
      'the old worker was never killed',
    );
    h.exit(1, null, 'SIGKILL');
    h.send({ type: 'signal', signal: 'SIGTERM' });
    h.exit(2, 0);
    assert.equal(h.exitCode(), ExitCode.ok);
  });

  it('two workers failing to bind log one fatal line; a bind failure after SIGTERM changes nothing', () => {
    const h = new Harness({ workers: 2 });
    h.send({ type: 'start' });
    h.send({ type: 'fatal', id: 1, code: 'EADDRINUSE', message: 'in use' });
    h.send({ type: 'fatal', id: 2, code: 'EADDRINUSE', message: 'in use' });
    assert.equal(h.of('log').filter((l) => l.level === 'fatal').length, 1);
    const stopping = new Harness({ workers: 1 });
    stopping.send({ type: 'start' });
    stopping.send({ type: 'signal', signal: 'SIGTERM' });
    stopping.send({ type: 'fatal', id: 1, code: 'EADDRINUSE', message: 'in use' });
    stopping.exit(1, null, 'SIGKILL');
    assert.equal(stopping.exitCode(), ExitCode.ok);
  });

  it('a worker killed at its boot timeout that reports ready in the race still counts as a boot failure', () => {
    const h = new Harness({ workers: 1, crashLoopLimit: 1 });
    h.send({ type: 'start' });
    h.advance();
    assert.ok(
      h.of('kill').some((a) => a.id === 1),
      'not killed at its boot timeout',
    );
    h.send({ type: 'ready', id: 1 });
    assert.equal(h.supervisor.snapshot().workers[0]?.state, 'stopping');
    h.exit(1, null, 'SIGKILL');
    assert.equal(h.exitCode(), ExitCode.crashLoop);
  });

  it('slots waiting their turn to boot are no pause of the primary', () => {
    const h = new Harness({ workers: 3, bootConcurrency: 1 });
    h.send({ type: 'start' });
    // As the primary does: it asks when to tick next after every event, and ticks then.
    for (let t = 700; t <= 2_100; t += 700) {
      h.supervisor.nextTick();
      h.clock = t;
      h.send({ type: 'tick' });
    }
    h.supervisor.nextTick();
    h.send({ type: 'ready', id: 1 });
    h.supervisor.nextTick();
    h.send({ type: 'tick' });
    assert.equal(h.of('log').filter((l) => l.msg.startsWith('the primary did not run')).length, 0);
  });

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    it(`a worker killed by ${signal} before it was ready (the terminal's process group) is no boot failure`, () => {
      const h = new Harness({ workers: 1, crashLoopLimit: 1 });
      h.send({ type: 'start' });
      h.exit(1, null, signal);
      assert.equal(h.exitCode(), undefined);
      assert.equal(h.supervisor.snapshot().restarts.boot, 0);
    });
  }

  it('a slot SIGTTIN adds back starts with no back-off, whatever it failed before', () => {
    const h = started({ workers: 2 });
    let [id] = h.idsInSlot(1) as [number];
    for (let i = 0; i < 3; i++) {
      h.exit(id);
      h.advance();
      [id] = h.idsInSlot(1) as [number];
      h.send({ type: 'ready', id });
    }
    h.send({ type: 'signal', signal: 'SIGTTOU' });
    h.exit(id, 0);
    h.send({ type: 'signal', signal: 'SIGTTIN' });
    [id] = h.idsInSlot(1) as [number];
    h.send({ type: 'ready', id });
    h.exit(id);
    assert.equal(h.of('log').at(-1)?.fields.restartInMs, DEFAULT_BACKOFF.initialMs);
  });

  for (const killed of ['hung', 'boot-timeout'] as const)
    it(`SIGTTOU removing the slot of a worker being killed (${killed}) makes its exit a planned stop: worker stopped, no failure`, () => {
      // Slot 1's worker is killed at its deadline; slot 0's serves and beats.
      const h = new Harness({
        workers: 2,
        crashLoopLimit: 1,
        bootTimeoutMs: killed === 'hung' ? 5_000 : 1_000,
      });
      h.send({ type: 'start' });
      h.send({ type: 'ready', id: 1 });
      if (killed === 'hung') {
        h.send({ type: 'ready', id: 2 });
        h.clock = OPTIONS.heartbeatTimeoutMs - 1;
        h.send({ type: 'heartbeat', id: 1 });
      }
      assert.deepEqual(
        h.advance().filter((a) => a.type === 'kill'),
        [{ type: 'kill', id: 2 }],
      );
      h.send({ type: 'signal', signal: 'SIGTTOU' });
      const from = h.actions.length;
      h.exit(2, null, 'SIGKILL');
      const logs = h.of('log', from);
      assert.deepEqual(
        logs.map((l) => [l.level, l.msg, l.fields.reason]),
        [['warn', 'worker stopped', 'scale']],
      );
      h.advance(60_000);
      assert.deepEqual(h.spawned().length, 2, 'the removed slot is not refilled');
      assert.deepEqual(h.supervisor.snapshot().restarts, { crash: 0, hung: 0, boot: 0, roll: 0, scale: 1 });
    });

  it("the whole service frozen (docker pause) for less than the heartbeat timeout, between two workers' heartbeats, kills no worker", () => {
    // The primary ticks at least every quarter of the timeout: a freeze long enough to make a
    // worker's silence reach the timeout (its heartbeats, every half of it at most, were due
    // during the freeze) always makes the next tick late enough to tell of it.
    const h = started();
    const [a, b] = [...h.live.keys()] as [number, number];
    h.supervisor.nextTick();
    h.clock = 1_000;
    h.send({ type: 'heartbeat', id: b }); // a's last heartbeat was at 0, its next due at 1.5 s
    h.supervisor.nextTick();
    // Frozen from here for 2.4 s: the first event after it is the primary's overdue tick.
    h.clock = 3_400;
    assert.deepEqual(
      h.send({ type: 'tick' }).filter((x) => x.type === 'kill'),
      [],
      `worker ${a} taken for hung`,
    );
    assert.ok(h.of('log').some((l) => l.msg.startsWith('the primary did not run')));
  });
});
