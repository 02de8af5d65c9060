/** What bench:rolls counts of its requests while the service rolls. */
export interface RollResult {
  readonly ok: number;
  /** Every request that did not get its 200: another status, or an error (a reset, a refusal). */
  readonly failed: number;
  /** The errors among the failed, by code. */
  readonly errors: Record<string, number>;
}

export class RollTally {
  #ok = 0;
  #failed = 0;
  readonly #errors: Record<string, number> = {};

  /** A response came, with this status. */
  answered(status: number): void {
    if (status === 200) this.#ok++;
    else this.#failed++;
  }

  /** The request failed without a response. */
  failed(err: unknown): void {
    this.#failed++;
    const code = String((err as NodeJS.ErrnoException).code ?? err);
    this.#errors[code] = (this.#errors[code] ?? 0) + 1;
  }

  result(): RollResult {
    return { ok: this.#ok, failed: this.#failed, errors: { ...this.#errors } };
  }
}
