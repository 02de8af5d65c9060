/**
 * A strict reader of the Prometheus text exposition format 0.0.4: it throws on anything a
 * scraper would reject or misread (undeclared or repeated families, bad names, label syntax,
 * values, duplicate series).
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"/y;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): Sample[] {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const types = new Map<string, string>();
  const done = new Set<string>();
  let current: string | undefined;
  const seen = new Set<string>();
  const samples: Sample[] = [];
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const where = `line ${i + 1}: ${line}`;
      if (line.startsWith('#')) {
        const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
        if (!m) throw new Error(`bad comment, ${where}`);
        const [, kind, name = '', rest = ''] = m;
        if (!NAME.test(name)) throw new Error(`bad metric name, ${where}`);
        if (current !== name) {
          if (current) done.add(current);
          if (done.has(name)) throw new Error(`family ${name} is not contiguous, ${where}`);
          current = name;
        }
        if (kind === 'TYPE') {
          if (!TYPES.has(rest)) throw new Error(`bad type, ${where}`);
          if (types.has(name)) throw new Error(`second TYPE for ${name}, ${where}`);
          types.set(name, rest);
        }
        return;
      }
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`bad sample, ${where}`);
      const [, name = '', labelText = '', valueText = ''] = m;
      if (name !== current || !types.has(name))
        throw new Error(`sample outside its declared family, ${where}`);
      if (types.get(name) === 'counter' && !name.endsWith('_total'))
        throw new Error(`counter without _total, ${where}`);
      const labels: Record<string, string> = {};
      const inner = labelText.slice(1, -1);
      let pos = 0;
      while (pos < inner.length) {
        LABEL.lastIndex = pos;
        const lm = LABEL.exec(inner);
        if (!lm) throw new Error(`bad labels, ${where}`);
        const [all, key = '', value = ''] = lm;
        if (key in labels) throw new Error(`repeated label, ${where}`);
        labels[key] = value;
        pos += all.length;
        if (pos < inner.length) {
          if (inner[pos] !== ',') throw new Error(`bad label separator, ${where}`);
          pos++;
        }
      }
      const value = /^[+-]?Inf$|^NaN$/.test(valueText)
        ? Number(valueText.replace('Inf', 'Infinity'))
        : Number(valueText);
      if (valueText === '' || (Number.isNaN(value) && valueText !== 'NaN'))
        throw new Error(`bad value, ${where}`);
      const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
      if (seen.has(key)) throw new Error(`duplicate series, ${where}`);
      seen.add(key);
      samples.push({ name, labels, value });
    });
  return samples;
}

/** Sum of a family's samples whose labels include `match`. */
export function total(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}
