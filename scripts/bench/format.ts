/** Number formatting and a plain-text table for the terminal report. */

export const DASH = '—';

export function int(n: number | undefined): string {
  return n === undefined ? DASH : Math.round(n).toLocaleString('en-US');
}

export function fixed(n: number | undefined, digits: number): string {
  return n === undefined ? DASH : n.toFixed(digits);
}

export function times(n: number | undefined): string {
  return n === undefined ? DASH : `${n.toFixed(2)}x`;
}

export function mebibytes(bytes: number | undefined): string {
  return bytes === undefined ? DASH : (bytes / 1024 / 1024).toFixed(1);
}

export interface Column<Row> {
  readonly title: string;
  readonly value: (row: Row) => string;
  /** Text columns are left-aligned, figures right-aligned. */
  readonly left?: boolean;
}

/** Renders rows under a header line, columns padded to their widest cell. */
export function renderTable<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): string {
  const cells = rows.map((row) => columns.map((c) => c.value(row)));
  const widths = columns.map((c, i) =>
    Math.max(c.title.length, ...cells.map((r) => (r[i] as string).length)),
  );
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (columns[i]?.left ? v.padEnd(widths[i] as number) : v.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd();
  const header = line(columns.map((c) => c.title));
  return [header, '-'.repeat(header.length), ...cells.map(line)].join('\n');
}
