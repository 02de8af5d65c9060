import { readFileSync } from 'node:fs';

/** Reads a file's text, or undefined when it does not exist or cannot be read. */
export type ReadFile = (path: string) => string | undefined;

/** The real ReadFile: /proc and /sys files that a kernel or a container may not have. */
export const readOrUndefined: ReadFile = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};
