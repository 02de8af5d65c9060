/**
 * What a failed program printed, fit for the terminal and the JSON report. A "program" given by
 * mistake can be a binary (--compare pm2=/usr/bin/false makes node print the bytes it could not
 * parse): control characters would drive the terminal, and one such line can be megabytes.
 */

const MAX_LINE = 200;
const MAX_LINES = 20;
// Control characters (Unicode's Cc: C0, DEL, C1) but tab and newline, and the replacement
// character that stands for invalid UTF-8.
const UNPRINTABLE = /(?:[^\P{Cc}\t\n]|\ufffd)+/gu;

/** Pure: control characters as "�" (a run of them as one), long lines cut, the last lines kept. */
export function printable(text: string): string {
  const lines = text
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((line) => {
      const clean = line.replace(UNPRINTABLE, '\ufffd');
      return clean.length > MAX_LINE
        ? `${clean.slice(0, MAX_LINE)}… (${clean.length - MAX_LINE} more characters)`
        : clean;
    });
  if (lines.length <= MAX_LINES) return lines.join('\n');
  return [`… (${lines.length - MAX_LINES} lines left out)`, ...lines.slice(-MAX_LINES)].join('\n');
}
