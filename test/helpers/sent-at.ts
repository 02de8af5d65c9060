/**
 * When undici handed each request's head to its socket (performance.now()), by the id in its
 * x-load-id header: undici publishes every head on this channel just before writing it. A request
 * started just before a fault may still be connecting when it happens: only this time says
 * whether it was sent before.
 */
import { subscribe } from 'node:diagnostics_channel';

const sent = new Map<string, number>();
let nextId = 1;
subscribe('undici:client:sendHeaders', (message) => {
  const id = /\r\nx-load-id: (\d+)\r\n/.exec(`\r\n${(message as { headers: string }).headers}`)?.[1];
  if (id !== undefined) sent.set(id, performance.now());
});

/** A new request id, and the headers that carry it. */
export function trackedRequest(): { readonly id: string; readonly headers: Record<string, string> } {
  const id = String(nextId++);
  return { id, headers: { 'x-load-id': id } };
}

/** When request `id`'s head was sent (undefined: never), forgetting it. */
export function takeSentAt(id: string): number | undefined {
  const at = sent.get(id);
  sent.delete(id);
  return at;
}
