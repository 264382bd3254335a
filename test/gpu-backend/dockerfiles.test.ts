// The GPU Dockerfiles, checked statically (no Docker engine here): they parse, build from the one
// pinned vLLM release the flag table was taken from, start through entrypoint.sh, check /health
// with what the image has, and their settings give a vLLM command line the table accepts.
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Healthcheck, Keyword, type Dockerfile } from 'dockerfile-ast'
import { describe, expect, it } from 'vitest'
import {
  argvProblems,
  DOCKERFILES,
  flag,
  flagTable,
  GPU_BACKEND,
  imageEnv,
  parseDockerfile,
  runEntrypoint,
  runScript,
  TEST_KEY,
} from './support.ts'

const KNOWN_KEYWORDS = new Set<string>(Object.values(Keyword))

/** Seconds of a Docker duration such as 600s, 10m or 1m30s. */
function seconds(duration: string): number {
  const parts = [...duration.matchAll(/(\d+)(h|m|s)/g)]
  expect(parts.map((part) => part[0]).join('')).toBe(duration)
  return parts.reduce((sum, [, value, unit]) => sum + Number(value) * ({ h: 3600, m: 60, s: 1 } as Record<string, number>)[unit ?? 's']!, 0)
}

function instructions(dockerfile: Dockerfile, keyword: string) {
  return dockerfile.getInstructions().filter((instruction) => instruction.getKeyword() === keyword)
}

describe.each(DOCKERFILES)('gpu-backend/%s', (name) => {
  const dockerfile = parseDockerfile(name)
  const table = flagTable()

  it('parses into known instructions only, with no line the parser could not place', () => {
    const keywords = dockerfile.getInstructions().map((instruction) => instruction.getKeyword())
    expect(keywords.length).toBeGreaterThan(5)
    expect(keywords.filter((keyword) => !KNOWN_KEYWORDS.has(keyword))).toEqual([])
    // Every non-comment line belongs to an instruction: nothing is silently dropped.
    const text = readFileSync(join(GPU_BACKEND, name), 'utf8').split('\n')
    const covered = new Set(
      dockerfile.getInstructions().flatMap((instruction) => {
        const { start, end } = instruction.getRange()
        return Array.from({ length: end.line - start.line + 1 }, (_, i) => start.line + i)
      }),
    )
    const stray = text
      .map((line, i) => ({ line, i }))
      .filter(({ line, i }) => line.trim() !== '' && !line.trimStart().startsWith('#') && !covered.has(i))
    expect(stray).toEqual([])
  })

  it(`builds from the pinned vLLM release of vllm-flags.json, never a moving tag`, () => {
    const froms = dockerfile.getFROMs()
    expect(froms).toHaveLength(1)
    const [from] = froms
    expect(`${from?.getImageName()}:${from?.getImageTag()}`).toBe(table.image)
    expect(from?.getImageTag()).toMatch(/^v\d+\.\d+\.\d+$/)
    expect(table.image).toBe(`vllm/vllm-openai:v${table.vllm}`)
  })

  it('names the release it replaces, to roll back to, and cites where each flag is defined at the pinned one', () => {
    expect(table.previous.image).toBe(`vllm/vllm-openai:v${table.previous.vllm}`)
    expect(table.previous.image).not.toBe(table.image)
    // No trace of the old pin, not even in a comment.
    expect(readFileSync(join(GPU_BACKEND, name), 'utf8')).not.toContain(table.previous.image)
    expect(table.sources[0]).toContain(`tag v${table.vllm} = commit `)
    const notPassed = Object.entries(table.notPassed).filter(([key]) => !key.startsWith('$'))
    expect(notPassed.length).toBeGreaterThan(0)
    for (const [flagName, spec] of [...Object.entries(table.flags), ...notPassed]) {
      expect(spec.source, flagName).toMatch(/^(vllm\/[\w/]+\.py:\d+|the negative form )/)
    }
  })

  it('starts through entrypoint.sh, copied executable, in exec form', () => {
    const copy = instructions(dockerfile, 'COPY')
    expect(copy.map((instruction) => instruction.getArgumentsContent())).toEqual(['entrypoint.sh /usr/local/bin/edge-proxy-vllm'])
    expect(copy[0]?.getTextContent()).toContain('--chmod=0755')
    const entrypoint = instructions(dockerfile, 'ENTRYPOINT')
    expect(entrypoint.map((instruction) => JSON.parse(instruction.getArgumentsContent() ?? 'null'))).toEqual([
      ['/usr/local/bin/edge-proxy-vllm'],
    ])
    // A CMD would add arguments to every vllm serve; the image leaves them to the operator.
    expect(instructions(dockerfile, 'CMD')).toEqual([])
  })

  it('checks /health with python3 from the image, with a start period long enough to load the weights', () => {
    const [healthcheck, ...others] = instructions(dockerfile, 'HEALTHCHECK')
    expect(others).toEqual([])
    expect(healthcheck).toBeInstanceOf(Healthcheck)
    const check = healthcheck as Healthcheck
    const flags = Object.fromEntries(check.getFlags().map((item) => [item.getName(), item.getValue()]))
    expect(seconds(flags['start-period'] ?? '')).toBeGreaterThanOrEqual(300)
    expect(seconds(flags.timeout ?? '')).toBeLessThan(seconds(flags.interval ?? ''))
    expect(Number(flags.retries)).toBeGreaterThanOrEqual(2)
    expect(check.getSubcommand()?.getValue()).toBe('CMD')
    const command = JSON.parse((check.getArgumentsContent() ?? '').replace(/^CMD\s+/, '')) as string[]
    expect(command[0]).toBe('python3')
    expect(command.join(' ')).toContain("'/health'")
    // The vLLM image is Python; a curl check would depend on a tool this file does not install.
    expect(command.join(' ')).not.toMatch(/curl|wget/)
  })

  it('bakes the weights into the image only when the BAKE_WEIGHTS build argument says so', () => {
    const args = Object.fromEntries(
      instructions(dockerfile, 'ARG').map((instruction) => instruction.getArgumentsContent()?.split('=') ?? []),
    )
    expect(args.BAKE_WEIGHTS).toBe('false')
    const run = instructions(dockerfile, 'RUN')
      .map((instruction) => instruction.getArgumentsContent() ?? '')
      .join('\n')
    expect(run).toContain('snapshot_download')
    expect(run).toContain('.baked-weights')
    expect(run).toMatch(/\*\) echo "BAKE_WEIGHTS must be true or false/)
    // Downloaded weights, baked or at run time, land where a cache volume can be mounted.
    expect(imageEnv(dockerfile).HF_HOME).toBe('/models/huggingface')
  })

  it('its RUN step makes HF_HOME, downloads and marks the weights only for BAKE_WEIGHTS=true, and refuses other values', async () => {
    const [run, ...others] = instructions(dockerfile, 'RUN').map((instruction) => instruction.getArgumentsContent() ?? '')
    expect(others).toEqual([])
    const dir = await mkdtemp(join(tmpdir(), 'bake-'))
    try {
      // A fake python3 records what the download would have fetched.
      await writeFile(join(dir, 'python3'), '#!/bin/sh\nprintf "%s\\n" "$@" > "$HF_HOME/python-args"\n')
      await chmod(join(dir, 'python3'), 0o755)
      const build = (bake: string) => {
        const hfHome = join(dir, `hf-${bake}`)
        const env = { ...imageEnv(dockerfile), HF_HOME: hfHome, BAKE_WEIGHTS: bake, PATH: `${dir}:/usr/bin:/bin` }
        return runScript(run ?? '', env).then((result) => ({ ...result, hfHome }))
      }
      const skipped = await build('false')
      expect(skipped.code).toBe(0)
      expect(existsSync(skipped.hfHome)).toBe(true)
      expect(existsSync(join(skipped.hfHome, '.baked-weights'))).toBe(false)
      const baked = await build('true')
      expect(baked.code).toBe(0)
      expect(existsSync(join(baked.hfHome, '.baked-weights'))).toBe(true)
      const args = (await readFile(join(baked.hfHome, 'python-args'), 'utf8')).split('\n')
      expect(args.slice(0, 2)).toEqual(['-c', expect.stringContaining('snapshot_download(sys.argv[1], revision=sys.argv[2] or None)')])
      expect(args.slice(2, 4)).toEqual([imageEnv(dockerfile).MODEL, ''])
      const refused = await build('yes')
      expect(refused.code).toBe(1)
      expect(refused.stderr).toBe('BAKE_WEIGHTS must be true or false, got: yes\n')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('turns off vLLM usage statistics, which would call home from every backend', () => {
    expect(imageEnv(dockerfile)).toMatchObject({ VLLM_NO_USAGE_STATS: '1', DO_NOT_TRACK: '1' })
  })

  it('its settings give a vllm serve command line of documented flags and valid values', async () => {
    const run = await runEntrypoint({ ...imageEnv(dockerfile), VLLM_API_KEY: TEST_KEY })
    expect(run.code).toBe(0)
    expect(argvProblems(run.argv ?? [], table)).toEqual([])
  })
})

describe('the two variants', () => {
  const argvOf = async (name: string) => (await runEntrypoint({ ...imageEnv(parseDockerfile(name)), VLLM_API_KEY: TEST_KEY })).argv ?? []

  it('Dockerfile serves the original checkpoint in bfloat16, unquantized', async () => {
    const argv = await argvOf('Dockerfile')
    expect(argv[1]).toBe('deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B')
    expect(flag(argv, '--dtype')).toBe('bfloat16')
    expect(argv).not.toContain('--quantization')
  })

  it('Dockerfile.awq serves an AWQ checkpoint with --quantization awq in float16, for GPUs without bfloat16', async () => {
    const argv = await argvOf('Dockerfile.awq')
    expect(argv[1]).toMatch(/awq/i)
    expect(flag(argv, '--quantization')).toBe('awq')
    expect(flag(argv, '--dtype')).toBe('float16')
  })
})
