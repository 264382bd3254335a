import { fileURLToPath } from 'node:url'
import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Tests that run in Node: the emulator itself and the real stack driven from outside. */
const nodeTests = [
  'test/emulator/**/*.test.ts',
  'test/e2e/**/*.test.ts',
  'test/scripts/**/*.test.ts',
  'test/gpu-backend/**/*.test.ts',
  'test/docs/**/*.test.ts',
  // Reads src/ from disk: the import graph.
  'test/architecture/**/*.test.ts',
  // The prompt floor against the real tokenizer, which the Worker pool cannot load.
  'test/schema-node/**/*.test.ts',
]

/**
 * Node tests that put a thousand clients on the machine at once. They run alone, after the other
 * two projects (scripts/test.ts): beside them on 2 cores, a burst that takes 5 s alone took over
 * 60 s, and the worker project's tests timed out waiting for the CPU (CI, 2026-12-07).
 */
const loadTests = ['test/e2e/burst.test.ts', 'test/e2e/edge-queue-abandon.test.ts']

export default defineConfig({
  root,
  test: {
    // vitest's default is one file at a time on a 2-core machine (cores - 1). Most files wait on
    // I/O (a workerd start, an emulator's tokens, a browser), so three at a time overlap the
    // node project's files with the worker project's, which runs its own files one at a time.
    maxWorkers: 3,
    projects: [
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: `${root}/wrangler.toml` },
            miniflare: {
              bindings: {
                BACKEND_URLS: inject('emulatorUrl'),
                BACKEND_API_KEY: inject('emulatorApiKey'),
                FLEET_EMULATOR_URLS: inject('fleetEmulatorUrls'),
                FIXTURE_SERVER_URL: inject('fixtureServerUrl'),
                KEEPALIVE_INTERVAL_MS: '15000',
                FIRST_EVENT_TIMEOUT_MS: '5000',
                EVENT_IDLE_TIMEOUT_MS: '5000',
                STREAM_TOKEN_SECRETS: 'test-stream-secret-new,test-stream-secret-old',
                ALLOWED_ORIGINS: 'https://allowed.example',
                // The tests call the Worker as http://gateway.test: its own origin.
                PUBLIC_ORIGINS: 'http://gateway.test',
                // Other files send thousands of requests with the default key; the limits' own
                // tests give their keys explicit limits.
                DEFAULT_REQUESTS_PER_MINUTE: '1000000',
                DEFAULT_TOKENS_PER_MINUTE: '1000000000',
                DEFAULT_CONCURRENT_STREAMS: '1000',
                // One emulator serves every file, and many tests make it fail on purpose: its circuit
                // must not open for the others. The fleet tests set realistic values.
                CIRCUIT_CONSECUTIVE_FAILURES: '1000000',
                CIRCUIT_FAILURE_RATE: '1',
                // Tests wait for each request's waitUntil, which holds until its telemetry batch is sent.
                TELEMETRY_BATCH_MS: '20',
              },
            },
          })),
        ],
        test: {
          name: 'worker',
          root,
          include: ['test/**/*.test.ts'],
          exclude: nodeTests,
          globalSetup: ['test/setup/emulator.ts'],
          setupFiles: ['test/support/seed-keys.setup.ts'],
          // Files share one emulator whose counters some tests read: run them one at a time,
          // in one workerd runtime (isolate: false). A fresh runtime per file cost each file half
          // a second and its whole module graph again (217 s for the project against 106 s);
          // the setup file clears what a file leaves in storage and the isolate's caches.
          fileParallelism: false,
          isolate: false,
          // Its own group: it runs after the node project's files, one at a time.
          sequence: { groupOrder: 1 },
          // npm test runs this project beside the node project (scripts/test.ts): a CPU-bound
          // test can take twice its time alone. A test's own deadlines are its assertions; this
          // only stops one that hangs.
          testTimeout: 15_000,
        },
      },
      {
        test: {
          name: 'node',
          root,
          include: nodeTests,
          exclude: loadTests,
          environment: 'node',
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'load',
          root,
          include: loadTests,
          environment: 'node',
          // One at a time: each measures what the machine does under its own load.
          fileParallelism: false,
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
})
