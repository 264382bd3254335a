// The GPU container's entrypoint and the Dockerfiles' RUN steps pass shellcheck (Debian's
// package; .ci/run installs it) as POSIX sh. Outside CI a machine without shellcheck skips this,
// saying why; in CI (CI=true) a missing shellcheck fails, so the check cannot vanish silently.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DOCKERFILES, ENTRYPOINT, parseDockerfile } from './support.ts'

const SHELLCHECK = '/usr/bin/shellcheck'
const available = existsSync(SHELLCHECK)
const inCi = process.env.CI === 'true'
const SKIPPED = available ? '' : ` (skipped: ${SHELLCHECK} is not installed; apt-get install shellcheck)`

/** shellcheck's findings (gcc format), for a file or, with `script`, for standard input. */
function shellcheck(target: string, script?: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    // -s sh: POSIX sh; -S style: every finding, down to style hints.
    const child = execFile(SHELLCHECK, ['-s', 'sh', '-S', 'style', '-f', 'gcc', target], (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code) : 0, output: `${stdout}${stderr}` })
    })
    child.stdin?.end(script ?? '')
  })
}

describe('shellcheck', () => {
  // Skipped only outside CI without shellcheck; in CI a missing shellcheck fails here.
  it.skipIf(!available && !inCi)(`entrypoint.sh has no shellcheck finding${SKIPPED}`, async () => {
    if (!available) expect.fail(`${SHELLCHECK} is missing in CI; .ci/run installs the Debian package shellcheck`)
    expect(await shellcheck(ENTRYPOINT)).toEqual({ code: 0, output: '' })
  })

  it.skipIf(!available && !inCi).each(DOCKERFILES)(`the RUN step of %s has no shellcheck finding${SKIPPED}`, async (name) => {
    if (!available) expect.fail(`${SHELLCHECK} is missing in CI`)
    const runs = parseDockerfile(name)
      .getInstructions()
      .filter((instruction) => instruction.getKeyword() === 'RUN')
    expect(runs.length).toBeGreaterThan(0)
    for (const run of runs) expect(await shellcheck('-', run.getArgumentsContent() ?? '')).toEqual({ code: 0, output: '' })
  })

  it.skipIf(!available)('would report a problem: the check is live', async () => {
    const result = await shellcheck('-', 'echo $1\n')
    expect(result.code).not.toBe(0)
    expect(result.output).toContain('SC2086')
  })
})
