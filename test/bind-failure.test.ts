import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { describe, it } from 'node:test';
import { bindFailure } from '../src/bind-failure.js';

/** An error as node:net gives it for a failed listen or lookup: "<syscall> <code>…". */
function systemError(message: string): NodeJS.ErrnoException {
  const [syscall = '', code = ''] = message.split(/[ :]/);
  const errno = (constants.errno as Record<string, number>)[code];
  return Object.assign(new Error(message), { code, syscall }, errno === undefined ? {} : { errno: -errno });
}

describe('bindFailure', () => {
  it('names the variable to change after the system message', () => {
    const cases: [string, string | undefined, number, string][] = [
      [
        'getaddrinfo ENOTFOUND web.invalid',
        'web.invalid',
        5000,
        'getaddrinfo ENOTFOUND web.invalid; HOST=web.invalid is a name that does not resolve here',
      ],
      [
        'listen EACCES: permission denied 0.0.0.0:80',
        undefined,
        80,
        'listen EACCES (permission denied): port 80 on every interface; a port below 1024 needs root or CAP_NET_BIND_SERVICE (or a lower net.ipv4.ip_unprivileged_port_start): set PORT to 1024 or more',
      ],
      [
        'listen EACCES: permission denied 127.0.0.1:5000',
        '127.0.0.1',
        5000,
        'listen EACCES: permission denied 127.0.0.1:5000; port 5000 is not permitted to this user',
      ],
      // 1024 is the first port that needs no privilege: refused there, it is not for being below 1024.
      [
        'listen EACCES: permission denied 127.0.0.1:1024',
        '127.0.0.1',
        1024,
        'listen EACCES: permission denied 127.0.0.1:1024; port 1024 is not permitted to this user',
      ],
      [
        'bind EADDRINUSE null:5000',
        undefined,
        5000,
        'bind EADDRINUSE (address already in use): port 5000 on every interface; something else listens on port 5000 (another program, or another instance of this service): stop it, or set another PORT',
      ],
    ];
    for (const [message, host, port, expected] of cases) {
      assert.equal(bindFailure(systemError(message), host, port), expected);
    }
  });

  it('adds nothing to an error of no system call (the start lock says what it is) or of another cause', () => {
    const lock = Object.assign(
      new Error('another instance of myservice is starting or serving on port 5000'),
      {
        code: 'EADDRINUSE',
      },
    );
    assert.equal(bindFailure(lock, undefined, 5000), lock.message);
    const other = systemError('listen EMFILE: too many open files 127.0.0.1:5000');
    assert.equal(bindFailure(other, '127.0.0.1', 5000), other.message);
  });
});
