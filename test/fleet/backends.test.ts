import { describe, expect, it } from 'vitest'
import { parseBackends } from '../../src/fleet/backends.ts'

describe('parseBackends', () => {
  it('reads comma-separated base URLs, trimming spaces and trailing slashes', () => {
    expect(parseBackends(' http://10.0.0.5:8000/ , https://gpu-2.example.com/vllm/ ')).toEqual([
      { id: '10.0.0.5:8000', url: 'http://10.0.0.5:8000' },
      { id: 'gpu-2.example.com', url: 'https://gpu-2.example.com/vllm' },
    ])
  })

  it.each([[''], [' , ']])('reads %j as no backend: a deployment routes to its fleet record only', (list) => {
    expect(parseBackends(list)).toEqual([])
  })

  it.each([['not a url'], ['ftp://10.0.0.5/'], ['http://10.0.0.5:8000,nope']])('refuses %j as a misconfiguration', (list) => {
    expect(() => parseBackends(list)).toThrow(expect.objectContaining({ status: 500, code: 'gateway_misconfigured' }))
  })
})
