/**
 * The request heads the fast path answers itself, and the Host rule every request is held to:
 * pure string checks, in the strict grammar of RFC 9112 and RFC 3986.
 */
import { isIPv6 } from 'node:net';

/** How a recognized request wants its connection treated. */
export type FastRequest = 'keep-alive' | 'close';

/**
 * One whole `GET /` (query allowed) request head and nothing after it, in the strict grammar of
 * RFC 9112: tchar header names, visible ASCII values, at most 100 header lines (more than any
 * client sends; node:http answers 431 past 1,000). Everything else fails and goes to node:http.
 * Linear: no character class in a repeated group overlaps the delimiter that ends it.
 */
const REQUEST_HEAD =
  /^GET \/(?:\?[\w\-.~!$&'()*+,;=:@/?%]*)? HTTP\/1\.([01])\r\n((?:[\w!#$%&'*+\-.^`|~]+:[\t\x20-\x7e]*\r\n){0,100})\r\n$/;
/**
 * Header lines that change how a request is framed or answered; llhttp reads Proxy-Connection as
 * Connection. Global for matchAll, which iterates a copy, so no lastIndex state is shared.
 */
const SPECIAL_HEADER =
  /^(host|connection|proxy-connection|content-length|transfer-encoding|expect|upgrade):([^\r]*)\r$/gim;

/**
 * The shape of a Host field value (RFC 9110 §7.2), whitespace around it removed: uri-host
 * [ ":" port ] of RFC 3986. uri-host is an IP literal in brackets, or a reg-name (IPv4 addresses
 * among them): unreserved, pct-encoded and sub-delims. Linear, like the expressions above;
 * whitespace is trimmed first because optional runs of it on both sides of a part that can be
 * empty make a regular expression backtrack quadratically on a run of spaces.
 */
const HOST_VALUE =
  /^(?:\[(?:[\dA-Fa-f:.]+|[Vv][\dA-Fa-f]+\.[\w\-.~!$&'()*+,;=:]+)\]|(?:[\w\-.~!$&'()*+,;=]|%[\dA-Fa-f]{2})*)(?::\d*)?$/;

/**
 * True for a valid Host value or absolute-form authority (no whitespace around it). An empty value
 * is valid: the request then names no authority, and the service has only one. An IP literal must
 * be an IPv6 address (or RFC 3986's IPvFuture, `[v1.x]`, whose `v` may be either case).
 */
export function isValidHost(value: string): boolean {
  if (!HOST_VALUE.test(value)) return false;
  return (
    value[0] !== '[' || value[1] === 'v' || value[1] === 'V' || isIPv6(value.slice(1, value.indexOf(']')))
  );
}

const isOws = (code: number): boolean => code === 0x20 || code === 0x09;

/**
 * A field value without the optional whitespace around it: spaces and tabs only (RFC 9110 §5.5).
 * Not String#trim, which also strips U+00A0, the Latin-1 decoding of an obs-text byte 0xA0, and
 * would let `Host: \xa0evil\xa0` through.
 */
export function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  return value.slice(start, end);
}

/**
 * Returns how to answer `head` on the fast path, or undefined when node:http must take it.
 * Connection semantics are node:http's: HTTP/1.1 keeps the connection unless `close`; HTTP/1.0
 * closes it unless `keep-alive`. A request without exactly one valid Host (none is fine for
 * HTTP/1.0) is left to node:http, where the server answers 400 (RFC 9112 §3.2).
 */
export function recognizeGreetingRequest(head: string): FastRequest | undefined {
  const match = REQUEST_HEAD.exec(head);
  if (match === null) return undefined;
  const http10 = match[1] === '0';
  let hosts = 0;
  let connection: string | undefined;
  for (const [, name, value] of (match[2] as string).matchAll(SPECIAL_HEADER)) {
    const lower = (name as string).toLowerCase();
    if (lower === 'host') {
      if (++hosts > 1 || !isValidHost(trimOws(value as string))) return undefined;
    } else if (lower === 'connection' && connection === undefined)
      connection = trimOws(value as string).toLowerCase();
    else return undefined;
  }
  if (hosts === 0 && !http10) return undefined;
  if (connection === undefined) return http10 ? 'close' : 'keep-alive';
  if (connection === 'close') return 'close';
  if (connection === 'keep-alive') return 'keep-alive';
  return undefined;
}
