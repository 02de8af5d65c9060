/** Which path a request asks for, and whether its request line and Host allow an answer at all. */
import type { IncomingMessage } from 'node:http';
import { isValidHost, trimOws } from './request-head.js';

/**
 * The scheme and authority of an absolute-form target (RFC 9112 §3.2.2), which a server must
 * accept; the authority ends at the path, the query or a fragment.
 */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)/i;

/**
 * The path an origin-form or absolute-form target names, without its query; undefined for a
 * target with a fragment, or an `http` or `https` one whose authority is invalid or has no host
 * (RFC 9110 §4.2.1). Other
 * targets (`*`, other schemes) come back whole and are not found.
 */
function targetPath(url: string): string | undefined {
  // A fragment is the client's alone (RFC 9110 §4.2.5): no request-target form has one (RFC 9112 §3.2).
  if (url.includes('#')) return undefined;
  let target = url;
  if (target.charCodeAt(0) !== 0x2f /* / */) {
    const absolute = ABSOLUTE_FORM.exec(target);
    if (absolute !== null) {
      const authority = absolute[1] as string;
      if (authority === '' || authority[0] === ':' || !isValidHost(authority)) return undefined;
      target = target.slice(absolute[0].length);
      if (target.charCodeAt(0) !== 0x2f) target = `/${target}`;
    }
  }
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * The path a request asks for, or undefined for one to refuse with 400 whatever it asks, before
 * reading any body: not HTTP/1 (llhttp accepts `GET /` as HTTP/0.9 and `HTTP/2.0` request
 * lines); HTTP/1.1 without Host, or any request with more than one Host line or an invalid one
 * (RFC 9112 §3.2: node:http keeps the first Host and checks none); HTTP/1.0 with
 * Transfer-Encoding, whose framing must be treated as faulty (RFC 9112 §6.1); an absolute-form
 * target with a bad authority.
 */
export function requestPath(req: IncomingMessage): string | undefined {
  if (req.httpVersionMajor !== 1) return undefined;
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return undefined;
  const raw = req.rawHeaders;
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (host !== undefined) return undefined;
      host = raw[i + 1] as string;
    }
  }
  const hostValid = host === undefined ? req.httpVersionMinor !== 1 : isValidHost(trimOws(host));
  return hostValid ? targetPath(req.url ?? '/') : undefined;
}
