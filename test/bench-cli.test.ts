/** The bench scripts' command lines and launchers: bench:burst, bench:rolls, the npm scripts, the bundle's bench.sh. */
import assert from 'node:assert/strict';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseBurstOptions } from '../scripts/bench/burst-options.js';
import { run } from '../scripts/bench/commands.js';
import { AS_NOBODY, loadsAsNobody } from '../scripts/bench/drop-root.js';
import { OptionError } from '../scripts/bench/options.js';
import { parseRollsOptions } from '../scripts/bench/rolls-options.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const BURST = join(HERE, '../scripts/accept-burst.js');
const ROLLS = join(HERE, '../scripts/roll-drops.js');
const REPO = join(HERE, '../..');

const dir = mkdtempSync(join(tmpdir(), 'bench-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('bench:burst and bench:rolls options', () => {
  it('defaults, and values refused with the option named, as the bench does', () => {
    assert.deepEqual(parseBurstOptions([]), { help: false, connections: 2000, workers: 2, rounds: 3 });
    assert.deepEqual(parseRollsOptions(['--rolls', '2']), {
      help: false,
      rolls: 2,
      rounds: 3,
      scale: false,
      inside: false,
    });
    assert.equal(parseRollsOptions(['--scale']).scale, true);
    const rejects = (parse: (argv: string[]) => unknown, argv: string[], message: RegExp) =>
      assert.throws(
        () => parse(argv),
        (err) => err instanceof OptionError && message.test(err.message) && !err.message.includes('\n'),
        argv.join(' '),
      );
    rejects(parseBurstOptions, ['--rounds', '0'], /^--rounds must be an integer from 1 to 100, got "0"$/);
    rejects(parseBurstOptions, ['--connections', '1e3'], /^--connections must be an integer/);
    rejects(parseRollsOptions, ['--rolls=-1'], /^--rolls must be an integer from 1 to 1000, got "-1"$/);
    // parseArgs' own message for this one has three lines.
    rejects(parseRollsOptions, ['--rolls', '-1'], /^Option '--rolls' argument is ambiguous\. Did you forget/);
    rejects(parseRollsOptions, ['--bogus'], /^Unknown option '--bogus'/);
  });

  for (const [script, name, bad] of [
    [BURST, 'bench:burst', ['--rounds', '0']],
    [ROLLS, 'bench:rolls', ['--rolls', '-1']],
  ] as const) {
    it(`${name}: a bad option is one line, the usage and exit 2; --help is the usage and exit 0`, async () => {
      for (const args of [bad, ['--bogus']]) {
        const { code, stderr, stdout } = await run([process.execPath, script, ...args]);
        assert.equal(code, 2, stderr);
        const [first, blank, usage] = stderr.split('\n');
        assert.doesNotMatch(first ?? '', /^\s+at |Error/, stderr);
        assert.equal(blank, '', stderr);
        assert.match(usage ?? '', /^Usage: npm run bench/);
        assert.equal(stdout, '');
      }
      const help = await run([process.execPath, script, '--help']);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: npm run bench.*\n[\s\S]*--rounds N/);
    });
  }
});

it('bench:rolls in a checkout that nobody, who runs its service, cannot read: one line and exit 2, before any run', {
  skip: process.getuid?.() !== 0 ? 'needs root (setpriv)' : false,
}, async () => {
  // mkdtemp's folder is root's alone, as CI's clone is: a copy of the build there, with the
  // project's packages beside it.
  const checkout = join(dir, 'root-only');
  cpSync(join(REPO, 'dist'), join(checkout, 'dist'), { recursive: true });
  symlinkSync(join(REPO, 'node_modules'), join(checkout, 'node_modules'));
  const { code, stderr, stdout } = await run([
    process.execPath,
    join(checkout, 'dist/scripts/roll-drops.js'),
    '--rolls',
    '1',
    '--rounds',
    '1',
  ]);
  assert.equal(code, 2, stderr);
  assert.match(
    stderr,
    /^bench:rolls: nobody \(uid 65534\), who runs the service here, cannot load .*readable by every user/,
  );
  assert.equal(stderr.trim().split('\n').length, 1, stderr);
  assert.equal(stdout, '');
});

it('bench:rolls says what the machine lacks before any run: root, then unshare (exit 2, one line)', {
  skip: process.getuid?.() !== 0 ? 'needs root (setpriv)' : false,
}, async (t) => {
  const cases: [string, string[], RegExp][] = [
    [
      'no unshare on PATH',
      ['env', 'PATH=/nonexistent'],
      /^bench:rolls: needs unshare \(Debian's util-linux\) on PATH\n$/,
    ],
  ];
  if (loadsAsNobody(process.execPath, ROLLS))
    cases.push(['not root', [...AS_NOBODY], /^bench:rolls: needs root: /]);
  else t.diagnostic('the not-root case left out: nobody cannot read this checkout');
  for (const [name, prefix, message] of cases) {
    const { code, stderr, stdout } = await run([
      ...prefix,
      process.execPath,
      ROLLS,
      '--rolls',
      '1',
      '--rounds',
      '1',
    ]);
    assert.equal(code, 2, `${name}: ${stderr}`);
    assert.match(stderr, message, name);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
    assert.equal(stdout, '');
  }
});

describe('launchers', () => {
  it('npm run bench, bench:rolls, bench:burst exec node: the signal npm passes on reaches the bench itself', () => {
    // `npm run` runs the script with sh -c and forwards SIGINT and SIGTERM to sh, which would not
    // pass them on to a node it started as a child.
    const { scripts } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    for (const [name, file] of [
      ['bench', 'bench'],
      ['bench:rolls', 'roll-drops'],
      ['bench:burst', 'accept-burst'],
    ] as const)
      assert.match(scripts[name] ?? '', new RegExp(`&& exec node dist/scripts/${file}\\.js$`), name);
  });

  it("the bundle's bench.sh finds its folder when run as `sh bench.sh` in it and through a symlink on PATH", async () => {
    // The bundle's layout, with a node that prints what it was asked to run.
    const bundle = join(dir, 'myservice-bench');
    mkdirSync(join(bundle, 'bin'), { recursive: true });
    copyFileSync(join(REPO, 'scripts/bundle/bench.sh'), join(bundle, 'bench.sh'));
    chmodSync(join(bundle, 'bench.sh'), 0o755);
    writeFileSync(join(bundle, 'bin/node'), '#!/bin/sh\necho "$@"\n', { mode: 0o755 });
    const onPath = join(dir, 'on-path');
    mkdirSync(onPath);
    symlinkSync(join(bundle, 'bench.sh'), join(onPath, 'myservice-bench'));
    const expected = `${join(bundle, 'dist/scripts/bench.js')} --workers 2\n`;
    const inside = await run(['sh', '-c', `cd "${bundle}" && sh bench.sh --workers 2`]);
    assert.equal(inside.stdout, expected, inside.stderr);
    const linked = await run(['sh', '-c', `PATH="${onPath}:$PATH" myservice-bench --workers 2`]);
    assert.equal(linked.stdout, expected, linked.stderr);
    const direct = await run([join(bundle, 'bench.sh'), '--workers', '2']);
    assert.equal(direct.stdout, expected, direct.stderr);
  });
});
