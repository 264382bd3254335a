/**
 * `promise`, or `timedOut()` thrown if it has not settled within `ms`. The work itself goes on (a
 * Durable Object call cannot be taken back): the caller decides what a late answer means.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer!: ReturnType<typeof setTimeout>
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
